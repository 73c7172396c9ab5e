"""Requests and dispatch: an elder (or a proxy, or staff) asks, staff assign or a volunteer
claims, and a paid request's minutes are held, released or redeemed (two-phase redemption)."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

from accounts.base import clean_text, optional_text
from accounts.errors import Forbidden, InvalidInput, NotFound, Words
from accounts.model import Member, MemberStatus, Principal, Role
from accounts.protection import mask_address
from accounts.tokens import new_id
from care.base import aware, require_active
from care.catalogue import Catalogue
from care.errors import (
    InsufficientBalance,
    SelfVerification,
    WrongState,
)
from care.model import (
    RequestStatus,
    ServiceRecord,
    ServiceRequest,
    Shortfall,
    Visit,
)
from care.repo import listed, live_record, locked_request, move_request, payers, save_request
from care.storage import (
    service_requests,
    service_types,
    stored_request,
    to_request,
    to_type,
)
from ledger.kinds import Redemption, Release, Reserve
from ledger.postings import hold_account

MAX_RECORD_MINUTES = 24 * 60
# How far ahead a service may be asked for: a year (a window in 2099 is a typo).
MAX_DAYS_AHEAD = 366


def _for_viewer(request: ServiceRequest, role: str) -> ServiceRequest:
    """Notes ("复查心脏") are for the elder's side, staff and the assigned volunteer; a
    volunteer browsing open requests sees the service, the time and the area, not them."""
    return request if role != "candidate" else replace(request, notes=None)


class Requests(Catalogue):
    """Requests: asking, dispatch, giving back, cancelling, and the hold behind a paid request."""

    def create_request(
        self,
        principal: Principal,
        elder_id: str,
        service_code: str,
        window_start: datetime,
        window_end: datetime,
        minutes: int,
        notes: str | None,
        redeem: bool,
    ) -> ServiceRequest:
        """Paid with her stored time (``redeem``), it is refused at once when her available
        minutes do not cover its price (``ServiceRequest.require_payable``, the rule a
        volunteer's claim meets too), whoever asks: she, her family proxy, staff, the API or
        a page; it never reaches volunteers to be refused when one takes it."""
        elder, access = self.accounts.member_access(principal, elder_id, "elder_id")
        if access not in ("self", "proxy", "staff", "admin"):
            raise Forbidden(
                "an elder, their family proxy or staff acting for them requests services"
            )
        if not elder.is_elder or elder.status is not MemberStatus.ACTIVE:
            raise InvalidInput("services are requested for an active elder", field="elder_id")
        start, end = aware(window_start, "window_start"), aware(window_end, "window_end")
        if end <= start:
            raise InvalidInput("window_end must be after window_start", field="window_end")
        window = int((end - start).total_seconds() // 60)
        if not 1 <= minutes <= min(window, MAX_RECORD_MINUTES):
            raise InvalidInput(
                "minutes must be 1-%(most)s (the time window)",
                field="minutes",
                most=min(window, MAX_RECORD_MINUTES),
            )
        self._require_useful_window(elder.bank_id, start, end)
        if elder.org_id is None:
            raise InvalidInput("the elder belongs to no organisation", field="elder_id")
        if redeem:
            self._require_eligible(elder)
        with self.store.transaction() as tx:
            kind = self._type_by_code(tx, elder.bank_id, service_code)
            asked = ServiceRequest(
                id=new_id(),
                bank_id=elder.bank_id,
                elder_id=elder.id,
                org_id=elder.org_id,
                service_type_id=kind.id,
                window_start=start,
                window_end=end,
                minutes=minutes,
                notes=optional_text(notes, "notes", 500, multiline=True),
                redeem=redeem,
                status=RequestStatus.OPEN,
                requested_by=principal.user_id or "",
                acting_for=access != "self",
                volunteer_id=None,
                assigned_by=None,
                hold_minutes=0,
                cancelled_by=None,
                cancel_reason=None,
                created_at=self.clock(),
            )
            if redeem:
                asked.require_payable(self._stored_time(elder), kind.weight_permille)
            tx.insert(service_requests, **stored_request(asked))
            return to_request(tx.get(service_requests, asked.id))

    def _stored_time(self, elder: Member) -> int:
        """Her available stored minutes (what her holds leave her)."""
        return self.ledger.balances([elder.ledger_account])[elder.ledger_account]

    def shortfalls(self, requests: list[ServiceRequest]) -> dict[str, Shortfall]:
        """Of ``requests``, those her stored time stands in the way of, by id
        (``ServiceRequest.shortfall``): open, paid with stored time, holding none yet and no
        longer covered, say since she gave time away or another redemption took it. Nobody
        can take them until her balance covers them again; her side or staff may cancel."""
        unheld = [r for r in requests if r.unheld]
        if not unheld:
            return {}
        with self.store.snapshot() as tx:
            payer = payers(tx, [r.id for r in unheld])
        stored = self.ledger.balances(sorted({account for account, _ in payer.values()}))
        found = {}
        for r in unheld:
            account, weight = payer[r.id]
            short = r.shortfall(stored.get(account, 0), weight)
            if short is not None:
                found[r.id] = short
        return found

    def _require_useful_window(self, bank_id: str, start: datetime, end: datetime) -> None:
        """A window someone can still serve and log: not ended before the policy's last day to
        log a record (a request can follow a visit already made), not past a year ahead."""
        now, late_days = self.clock(), self.policy(bank_id).record_late_days
        if end < now - timedelta(days=late_days):
            raise InvalidInput(
                "window_end is more than %(days)s days ago: no record of it could be logged",
                field="window_end",
                days=late_days,
            )
        if start > now + timedelta(days=MAX_DAYS_AHEAD):
            raise InvalidInput(
                "window_start is more than %(days)s days ahead",
                field="window_start",
                days=MAX_DAYS_AHEAD,
            )

    def get_request(self, principal: Principal, request_id: str) -> ServiceRequest:
        with self.store.snapshot() as tx:
            request, role = self._visible_request(tx, principal, request_id)
        return _for_viewer(request, role)

    def visit_place(
        self, principal: Principal, request_id: str, in_full: bool = False
    ) -> tuple[str | None, str | None]:
        """Whom and where: the elder's masked name for the volunteer the request is assigned
        to, with her address ``in_full`` (each such read recorded), only the area for anyone
        else who sees the request (``MemberViews.visit_place``)."""
        with self.store.snapshot() as tx:
            request, role = self._visible_request(tx, principal, request_id)
        assigned = request.shows_the_home_to(role)
        return self.accounts.visit_place(
            principal, request.elder_id, request.id if assigned else None, in_full
        )

    def visit(self, principal: Principal, request_id: str) -> Visit:
        """The visit page's view for a phone (``GET /v1/requests/{id}/visit``), by the page's
        rule (``ServiceRequest.shows_the_home_to``, through ``visit_place``): the volunteer the
        request is assigned to gets the elder's masked name and full address, the read of the
        address recorded in ``pii_access`` as on the page. Anyone else gets the 404 of a request
        that does not exist (staff and the elder's side read the request itself, a volunteer
        browsing open requests sees only the area); its volunteer, once it is no longer
        assigned, a wrong-state refusal, and nothing is recorded."""
        with self.store.snapshot() as tx:
            request, role = self._visible_request(tx, principal, request_id)
            service = to_type(tx.get(service_types, request.service_type_id))
        if role != "volunteer":
            raise NotFound("no request %(id)s", id=request_id)
        if not request.shows_the_home_to(role):
            raise WrongState("request is %(status)s, not assigned", status=Words(request.status))
        name, address = self.accounts.visit_place(principal, request.elder_id, request.id, True)
        return Visit(request, service, name, mask_address(address), address)

    def list_requests(self, principal: Principal, status: str | None) -> list[ServiceRequest]:
        if principal.is_partner:
            raise Forbidden("partner keys cannot read requests")
        open_ones = (service_requests.c.status == RequestStatus.OPEN.value,)
        with self.store.snapshot() as tx:
            rows = listed(
                tx,
                service_requests,
                principal,
                status=status,
                statuses=RequestStatus,
                by=service_requests.c.window_start,
                sees_all=principal.is_bank_admin,
                also=open_ones if principal.has(Role.VOLUNTEER) else (),
            )
        requests = [(r, self._role_in(principal, r)) for r in map(to_request, rows)]
        # A volunteer looking for a request to take is not offered one her stored time no
        # longer pays for (her side and staff see it, with ``shortfalls`` saying why).
        offered = [r for r, role in requests if role == "candidate"]
        stuck = self.shortfalls(offered)
        return [_for_viewer(r, role) for r, role in requests if r.id not in stuck]

    @staticmethod
    def _role_in(principal: Principal, request: ServiceRequest) -> str:
        """How a caller who may list ``request`` relates to it (as ``_visible_request``)."""
        if principal.is_bank_admin:
            return "admin"
        if request.org_id in principal.orgs():
            return "staff"
        if (
            principal.acting_member_id == request.elder_id
            or request.elder_id in principal.proxied_members()
        ):
            return "elder"
        acting = principal.acting_member_id
        if acting is not None and acting == request.volunteer_id:
            return "volunteer"
        return "candidate"

    def assign(self, principal: Principal, request_id: str, volunteer_id: str) -> ServiceRequest:
        """Staff dispatch a request to a volunteer (线下派单)."""
        with self.store.snapshot() as tx:
            request, role = self._visible_request(tx, principal, request_id)
        if role not in ("staff", "admin"):
            raise Forbidden("only staff of the elder's organisation dispatch requests")
        volunteer = self._bank_member(principal, volunteer_id)
        return self._accept(request, volunteer, principal.user_id or "")

    def claim(self, principal: Principal, request_id: str) -> ServiceRequest:
        """A volunteer takes an open request (线上点单)."""
        volunteer = self._acting_volunteer(principal, Words("claims requests"))
        with self.store.snapshot() as tx:
            request, _ = self._visible_request(tx, principal, request_id)
        return self._accept(request, volunteer, principal.user_id or "")

    def _accept(self, request: ServiceRequest, volunteer: Member, by: str) -> ServiceRequest:
        """Open → assigned. A redemption's minutes are held at the first assignment and stay
        held while the request is withdrawn and taken again; they leave the hold only by the
        redemption (the service happened) or the release (the request was cancelled)."""
        if request.status is not RequestStatus.OPEN:
            raise WrongState("request is %(status)s, not open", status=Words(request.status))
        if not volunteer.is_volunteer:
            raise InvalidInput("the request must go to a volunteer", field="volunteer_id")
        require_active(volunteer, "volunteer_id")
        if volunteer.id == request.elder_id:
            raise SelfVerification("a member cannot serve their own request")
        elder = self.accounts.member(request.elder_id)
        require_active(elder, "elder_id")
        hold = request.hold_minutes
        placed = False
        if request.redeem and not hold:
            self._require_eligible(elder)
            with self.store.snapshot() as tx:
                kind = to_type(tx.get(service_types, request.service_type_id))
            ref = self._request_ref(request.id)
            reserve = Reserve(
                f"reserve:{ref}",
                elder.ledger_account,
                ref,
                kind.code,
                request.minutes,
                kind.weight_permille,
            )
            hold = reserve.amount
            placed = True
            try:
                self._append(reserve.to_request())
            except InsufficientBalance as exc:  # the ledger's floor: her minutes, not his
                have = exc.values.get("available")
                request.require_payable(have if isinstance(have, int) else 0, kind.weight_permille)
                raise
        with self.store.transaction() as tx:
            changed = move_request(
                tx,
                request.id,
                RequestStatus.OPEN,
                status=RequestStatus.ASSIGNED.value,
                volunteer_id=volunteer.id,
                assigned_by=by,
                hold_minutes=hold,
            )
            now = to_request(tx.get(service_requests, request.id))
        if not changed:
            if placed and now.status is RequestStatus.CANCELLED:
                # Cancelled between our reserve and our update: the canceller saw no hold.
                self._release(now, hold)
            raise WrongState(
                "request was %(status)s meanwhile",
                zh="该需求已被他人接单或已取消",
                status=Words(now.status),
            )
        return now

    def _release(self, request: ServiceRequest, minutes: int) -> None:
        """Give a cancelled request's held minutes back (idempotent: one id per request)."""
        elder = self.accounts.member(request.elder_id)
        ref = self._request_ref(request.id)
        self._append(
            Release(f"release:{ref}", elder.ledger_account, minutes, request=ref).to_request()
        )

    def withdraw(self, principal: Principal, request_id: str) -> ServiceRequest:
        """The assigned volunteer (or staff) gives a request back: it is open again for
        another volunteer, its held minutes stay held."""
        with self.store.snapshot() as tx:
            request, role = self._visible_request(tx, principal, request_id)
        with self.store.transaction() as tx:
            current = locked_request(tx, request.id)
            has_record = live_record(tx, request.id) is not None
            withdrawn = current.withdrawn(role, has_record=has_record)
            save_request(tx, current, withdrawn)
            return withdrawn

    def cancel(self, principal: Principal, request_id: str, reason: str) -> ServiceRequest:
        """The elder's side or staff cancel; held minutes go back to the elder. A request
        whose service was recorded cannot be cancelled until staff reject that record: the
        service is either paid or its minutes released, never neither."""
        text = clean_text(reason, "reason", 500)
        with self.store.snapshot() as tx:
            request, role = self._visible_request(tx, principal, request_id)
        if role == "candidate":  # sees an open request only to claim it: none of theirs
            raise NotFound("no request %(id)s", id=request_id)
        with self.store.transaction() as tx:
            current = locked_request(tx, request.id)
            has_record = live_record(tx, request.id) is not None
            cancelled = current.cancelled(role, principal.user_id, text, has_record=has_record)
            save_request(tx, current, cancelled)
        if cancelled.hold_minutes:
            self._release(cancelled, cancelled.hold_minutes)
        return cancelled

    def _redeem(self, record: ServiceRecord) -> None:
        """The service of a request happened (its request is completed, in the transaction
        that confirmed the record): post the held redemption. Idempotent, one id a request."""
        assert record.request_id is not None
        with self.store.snapshot() as tx:
            request = to_request(tx.get(service_requests, record.request_id))
        if request.status is RequestStatus.COMPLETED and request.hold_minutes:
            elder = self.accounts.member(request.elder_id)
            with self.store.snapshot() as tx:
                kind = to_type(tx.get(service_types, request.service_type_id))
            ref = self._request_ref(request.id)
            redemption = Redemption(
                f"redeem:{ref}",
                hold_account(elder.ledger_account),
                request.hold_minutes,
                kind.code,
                request=ref,
                record=record.digest,
            )
            self._append(redemption.to_request())
