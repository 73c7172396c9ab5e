"""The demo bank: organisations, staff, members with known passwords, and a ledger history.

Everything goes through the real services (accounts and the log's append path), so the demo
is exactly what a new bank would look like after some months of use.
"""

from __future__ import annotations

import dataclasses
import random
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from accounts.model import (
    Grant,
    Member,
    OrgKind,
    Principal,
    PriorityFlag,
    Relation,
    Role,
    User,
)
from accounts.protection import id_check_character
from accounts.service import AccountsService, PersonalInput
from accounts.totp import code_at
from care.service import CareService
from demo.history import DemoClock, history, slot
from demo.seed import CATALOGUE, DEMO_BANK
from ledger.log import Log
from partners.exchanges import Exchanges
from partners.links import PartnerLinks
from reports.halfyear import HalfYearReports

SURNAMES = "王李张刘陈杨黄赵周吴徐孙马朱胡郭何林高罗"
GIVEN = "秀英桂兰玉梅建国志强海燕丽娟明华德福淑珍国庆文静晓东春生秋菊"


@dataclass(frozen=True)
class DemoLogin:
    username: str
    password: str
    role: str
    what: str


DEMO_LOGINS = (
    DemoLogin("admin", "demo-admin-2026", "bank_admin", "bank administrator (民政)"),
    DemoLogin("auditor", "demo-auditor-2026", "auditor", "auditor: read-only, no personal data"),
    DemoLogin("centre-admin", "demo-centre-admin-2026", "org_admin", "admin of 鼓楼社区服务中心"),
    DemoLogin("centre-staff", "demo-centre-staff-2026", "org_staff", "staff of 鼓楼社区服务中心"),
    DemoLogin("volunteer", "demo-volunteer-2026", "volunteer", "a volunteer (李志强)"),
    DemoLogin("elder", "demo-elder-2026", "elder", "an elder who lives alone (王秀英, 82)"),
    DemoLogin("family", "demo-family-2026", "family_proxy", "王秀英's son, her family proxy"),
)


# Published so that anyone trying the demo can log in as staff with a second factor
# (`timebank demo-totp` prints the current code). Real banks' secrets are never known.
DEMO_STAFF_TOTP_SECRET = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"  # noqa: S105 - published demo


# The demo's partner platform, linked to the demo volunteer and (by her son) the demo elder. Its
# key is published like the TOTP secret above: a real bank's keys are random and shown once.
DEMO_PARTNER_NAME = "鼓楼区智慧养老服务平台 (demo)"
DEMO_PARTNER_KEY = "tbk_demo-district-platform-2026"
DEMO_PARTNER_SCOPES = ("read_points", "read_statement", "request_exchange")
# The one exchange the demo platform asked and the elder's son confirmed: a meal, paid in minutes.
DEMO_EXCHANGE_MINUTES = 30
DEMO_EXCHANGE_REFERENCE = "demo-meal-0001"
DEMO_EXCHANGE_DESCRIPTION = "助餐：午餐送餐上门一次 (demo)"


def current_demo_code(steps_back: int = 0) -> str:
    return code_at(DEMO_STAFF_TOTP_SECRET, int(time.time() // 30) - steps_back)


class DemoExists(RuntimeError):
    pass


def login_help() -> str:
    lines = ['Demo logins (bank \'demo\'): POST /v1/auth/login {"username", "password"}']
    lines += [f"  {d.username:<13} {d.password:<24} {d.what}" for d in DEMO_LOGINS]
    lines.append(
        f"  centre-staff verifies hours with a TOTP code from the published demo secret "
        f"{DEMO_STAFF_TOTP_SECRET}: timebank demo-totp prints the current code"
    )
    lines.append(
        f"  partner key {DEMO_PARTNER_KEY}: {DEMO_PARTNER_NAME}, linked to volunteer and elder "
        "(docs/partners.md)"
    )
    return "\n".join(lines)


def _person(rng: random.Random, n: int, elder: bool) -> PersonalInput:
    name = rng.choice(SURNAMES) + "".join(rng.sample(GIVEN, rng.choice((1, 2))))
    year = rng.randint(1934, 1962) if elder else rng.randint(1960, 2004)
    born = date(year, rng.randint(1, 12), rng.randint(1, 28))
    district = rng.randint(10, 99)
    rng.choice("0123456789X")  # drawn as before, so the rest of the demo stays as it was
    street = rng.choice(("湖南路", "中山北路", "宁海路", "山西路"))
    first17 = f"3201{district}{born:%Y%m%d}{n % 1000:03d}"
    return PersonalInput(
        name=name,
        phone=f"13{rng.randint(0, 9)}{n:08d}",
        id_number=first17 + id_check_character(first17),
        address=f"南京市鼓楼区{street}{rng.randint(1, 300)}号",
        birth_date=born,
    )


@dataclass(frozen=True)
class _Newcomer:
    """A member the demo registers over the months, drawn in order so the demo's random sequence
    stays the same whatever the order they join in."""

    n: int
    elder: bool
    at_centre: bool
    personal: PersonalInput
    volunteer: bool
    flag: str | None


# The demo's history: about 18 months (the two half years before the current one, whole, on
# any day), up to two days ago; this month's visits, the exchange and the reports are real time.
HISTORY_DAYS = 550
HISTORY_END_DAYS = 2


def last_two_halves(today: date) -> tuple[str, str]:
    """The two most recent half years that have ended on ``today``, the older first."""
    if today.month <= 6:
        return f"{today.year - 1}-H1", f"{today.year - 1}-H2"
    return f"{today.year - 1}-H2", f"{today.year}-H1"


def seed_demo_bank(
    accounts: AccountsService,
    care: CareService,
    log: Log,
    entries: int,
    members: int = 300,
    partners: PartnerLinks | None = None,
    reports: HalfYearReports | None = None,
) -> int:
    """Create the demo bank and its history; returns the number of ledger entries appended.

    ``log`` must be opened with a ``DemoClock`` (``Log.open(settings, clock=DemoClock())``):
    the bank opens about 18 months ago and its members and ledger history follow month after
    month; what happens this month is real time. With ``reports``, the bank's administrator
    then publishes the two half years that have ended."""
    if log.size() != 0:
        raise DemoExists("the database already has entries; the demo seed only fills an empty one")
    clock = log.clock
    if not isinstance(clock, DemoClock):
        raise TypeError("the demo seed needs a log opened with a DemoClock")
    running = accounts.clock, care.clock
    accounts.clock = care.clock = clock.now
    try:
        return _seed(accounts, care, log, clock, entries, members, partners, reports)
    finally:
        clock.at = None
        accounts.clock, care.clock = running


def _seed(
    accounts: AccountsService,
    care: CareService,
    log: Log,
    clock: DemoClock,
    entries: int,
    members: int,
    partners: PartnerLinks | None,
    reports: HalfYearReports | None,
) -> int:
    rng = random.Random(2026)  # noqa: S311 - reproducible demo data, not secrets
    now = datetime.now(UTC)
    opened = (now - timedelta(days=HISTORY_DAYS)).replace(hour=1, minute=0, second=0, microsecond=0)
    clock.at = opened
    accounts.create_bank(DEMO_BANK, "鼓楼区养老时间银行 (demo)")
    by_name = {d.username: d for d in DEMO_LOGINS}
    admin_login = by_name["admin"]
    admin_user = accounts.create_user(
        DEMO_BANK, "admin", Role.BANK_ADMIN, None, admin_login.password
    )
    admin = accounts.principal_for_user(admin_user.user.id)
    centre = accounts.create_org(
        admin, "鼓楼社区服务中心", str(OrgKind.COMMUNITY_CENTRE), phone="025-8321 0000"
    )
    station = accounts.create_org(
        admin, "安康养老服务站", str(OrgKind.SERVICE_STATION), phone="025-8321 0001"
    )
    accounts.create_org(admin, "夕阳红志愿者协会", str(OrgKind.SOCIAL_ORGANISATION))
    accounts.create_user(DEMO_BANK, "auditor", Role.AUDITOR, None, by_name["auditor"].password)
    centre_admin = accounts.create_user(
        DEMO_BANK, "centre-admin", Role.ORG_ADMIN, centre.id, by_name["centre-admin"].password
    )
    staff_user = accounts.create_user(
        DEMO_BANK, "centre-staff", Role.ORG_STAFF, centre.id, by_name["centre-staff"].password
    )
    staff = accounts.principal_for_user(staff_user.user.id)
    for code, zh, en, category, weight in CATALOGUE:
        care.upsert_service_type(admin, code, zh, en, category, weight)

    volunteer = accounts.register_member(
        staff,
        centre.id,
        PersonalInput("李志强", "13800001234", birth_date=date(1985, 4, 2)),
        volunteer=True,
        elder=False,
        username="volunteer",
        password=by_name["volunteer"].password,
    )
    family = accounts.register_member(
        staff,
        centre.id,
        PersonalInput("王建国", "13900005678", birth_date=date(1970, 9, 9)),
        volunteer=True,
        elder=False,
        username="family",
        password=by_name["family"].password,
    )
    elder = accounts.register_member(
        staff,
        centre.id,
        PersonalInput(
            "王秀英",
            "13700009876",
            id_number="320106194403150027",
            address="南京市鼓楼区湖南路12号3单元",
            birth_date=date(1944, 3, 15),
        ),
        volunteer=False,
        elder=True,
        username="elder",
        password=by_name["elder"].password,
    )
    accounts.set_flag(staff, elder.member.id, str(PriorityFlag.LIVING_ALONE), "独居, 子女在外地")
    accounts.grant_proxy(staff, elder.member.id, "family")
    link = accounts.declare_relative(staff, family.member.id, elder.member.id, str(Relation.PARENT))
    accounts.decide_relative(staff, link.id, confirm=True)

    newcomers = [_newcomer(rng, n) for n in range(members)]
    accounts_of: dict[str, str] = {
        slot(0): volunteer.member.ledger_account,
        slot(1): family.member.ledger_account,
        slot(2): elder.member.ledger_account,
    }
    joined: dict[int, str] = {}  # newcomer n -> member id

    def register(who: _Newcomer) -> None:
        org = centre if who.at_centre else station
        org_staff = staff if who.at_centre else admin
        new = accounts.register_member(
            org_staff, org.id, who.personal, volunteer=who.volunteer, elder=who.elder
        )
        if who.flag is not None:
            accounts.set_flag(org_staff, new.member.id, who.flag, None)
        accounts_of[slot(who.n + 3)] = new.member.ledger_account
        joined[who.n] = new.member.id

    # Past months: centre-admin confirmed for the elders, centre-staff verified.
    # A whole number of days from the opening, so the history's layout (which seq is which
    # entry) is the same whatever the hour of seeding.
    history_end = opened + timedelta(days=HISTORY_DAYS - HISTORY_END_DAYS)
    appended = history(
        log,
        clock,
        entries,
        len(newcomers),
        lambda n: register(newcomers[n]),
        accounts_of,
        opened,
        history_end,
        centre.id,
        lambda entry_id: accounts.protector.pseudonym(entry_id, staff_user.user.id),
        lambda entry_id: accounts.protector.pseudonym(entry_id, centre_admin.user.id),
    )

    # This month, in real time.
    clock.at = None
    # As on a real desk: the centre's admin issues an enrolment code, the staff member enrols.
    enrolment_code, _ = accounts.issue_enrolment_code(
        accounts.principal_for_user(centre_admin.user.id), staff_user.user.id
    )
    accounts.begin_totp(staff, enrolment_code, DEMO_STAFF_TOTP_SECRET)
    # Enrolled with the previous step's code (accepted for clock drift), so that the code
    # `timebank demo-totp` prints right after seeding has not been used yet.
    accounts.confirm_totp(staff, current_demo_code(steps_back=1))
    partners = partners or PartnerLinks(accounts.store, accounts, log, care.policy)
    _link_demo_partner(accounts, partners, admin, volunteer.user, family.user, elder.member.id)
    centre_volunteers = [joined[w.n] for w in newcomers if w.at_centre and w.volunteer]
    centre_priority = [joined[w.n] for w in newcomers if w.at_centre and w.flag is not None]
    appended += _demo_exchange(accounts, partners, log, family.user, elder.member)
    appended += _visit_this_month(
        care,
        _volunteer_principals(accounts, centre_volunteers),
        accounts.principal_for_user(centre_admin.user.id),
        dataclasses.replace(staff, second_factor=True),
        centre_priority,
    )
    if reports is not None:
        zone = ZoneInfo(care.policy(DEMO_BANK).timezone)
        for half in last_two_halves(datetime.now(UTC).astimezone(zone).date()):
            reports.publish(admin, half)
            appended += 1
    return appended


def _newcomer(rng: random.Random, n: int) -> _Newcomer:
    """The n-th member the demo registers after its first three, drawn as the demo always drew
    them."""
    is_elder = rng.random() < 0.45
    at_centre = rng.random() < 0.6
    personal = _person(rng, n, is_elder)
    volunteer = not is_elder or rng.random() < 0.2
    flag = None
    if is_elder and rng.random() < 0.3:
        flag = rng.choice([str(f) for f in PriorityFlag])
    return _Newcomer(n, is_elder, at_centre, personal, volunteer, flag)


def _demo_exchange(
    accounts: AccountsService,
    partners: PartnerLinks,
    log: Log,
    family: User | None,
    elder: Member,
) -> int:
    """The platform asks for a meal for the elder, paid with her minutes; her son confirms it
    as her proxy: one ``exchange`` entry, shown on /exchanges. Skipped (0) when a small seed
    left her fewer minutes than the meal costs."""
    if log.balance(elder.ledger_account) < DEMO_EXCHANGE_MINUTES:
        return 0
    assert family is not None
    exchanges = Exchanges(partners, log)
    platform = accounts.authenticate(DEMO_PARTNER_KEY)
    handle = partners.handle(platform.partner_key_id or "", elder.id)
    exchange, _ = exchanges.request(
        platform, handle, DEMO_EXCHANGE_MINUTES, DEMO_EXCHANGE_REFERENCE, DEMO_EXCHANGE_DESCRIPTION
    )
    exchanges.confirm(accounts.principal_for_user(family.id), exchange.id)
    return 1


def _volunteer_principals(accounts: AccountsService, member_ids: list[str]) -> list[Principal]:
    """The centre's demo volunteers without a login, as the principal their phone would be."""
    return [
        Principal(
            user_id=None,
            bank_id=DEMO_BANK,
            grants=(Grant(Role.VOLUNTEER, DEMO_BANK),),
            member_id=member_id,
            member_active=True,
        )
        for member_id in member_ids
    ]


def _visit_this_month(
    care: CareService,
    volunteers: list[Principal],
    confirmer: Principal,
    verifier: Principal,
    elders: list[str],
) -> int:
    """Two in three of the centre's priority elders visited this month (an hour of company,
    confirmed with the elder's printed code or by the centre's admin for her, verified by its
    staff), so that the current
    month's visit coverage (docs/statistics.md) has visits and elders still to visit. Nothing
    in the first hours of a month, when the visits fall at the end of the month before (the
    log is the same size either way). Returns the deposits made."""
    zone = ZoneInfo(care.policy(DEMO_BANK).timezone)
    now = datetime.now(UTC)
    month_start = now.astimezone(zone).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    room = int((now - month_start).total_seconds() // 3600) - 2
    deposits = 0
    for n, elder_id in enumerate(elders):
        if n % 3 == 2:
            continue
        check_in = now - timedelta(hours=2 + (n % room if room >= 1 else n))
        # Most elders read the code on the card the centre printed for them; for one in four
        # the centre's admin confirms on her behalf (staff_for_elder).
        by_card = n % 6 != 1
        card = care.create_confirmation_code(confirmer, elder_id)[0] if by_card else None
        record = care.log_record(
            volunteers[n % len(volunteers)],
            elder_id=elder_id,
            service_code="company",
            check_in=check_in,
            check_out=check_in + timedelta(hours=1),
            minutes=None,
            request_id=None,
            device_key_id=None,
            signature=None,
            confirmation_code=card,
        )
        if not by_card:
            care.confirm(confirmer, record.id)
        care.verify(verifier, record.id)
        deposits += 1
    return deposits


def _link_demo_partner(
    accounts: AccountsService,
    partners: PartnerLinks,
    admin: Principal,
    volunteer: User | None,
    family: User | None,
    elder_id: str,
) -> None:
    """The district platform's key, and its links: the volunteer approves her own, the elder's
    son approves his mother's as her family proxy (a year each: read points and statements,
    request exchanges)."""
    accounts.create_partner_key(
        admin, DEMO_PARTNER_NAME, DEMO_PARTNER_SCOPES, published_secret=DEMO_PARTNER_KEY
    )
    platform = accounts.authenticate(DEMO_PARTNER_KEY)
    for user, member_id in ((volunteer, None), (family, elder_id)):
        assert user is not None  # both were registered with a login
        asked = partners.request(platform, DEMO_PARTNER_SCOPES, 365)
        partners.approve(accounts.principal_for_user(user.id), asked.id, member_id)
