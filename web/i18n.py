"""Languages of the pages and of problem messages: zh-CN first, English complete.

The catalogs are gettext ``.po`` files under ``web/locale`` (``make i18n-extract i18n-update``
keeps them in step with the code). They are compiled in memory when first used, so a fresh clone
needs no build step and a stale ``.mo`` can never be served.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import NullTranslations, Translations

from accounts.errors import AccountsError, Choices, InvalidFields, Words
from accounts.model import PriorityFlag
from care.errors import CareError
from ledger.errors import LedgerError

LOCALE_DIR = Path(__file__).parent / "locale"
LANGUAGES = {"zh-CN": "zh_CN", "en": "en"}  # the HTML tag → the catalog's locale
DEFAULT_LANGUAGE = "zh-CN"
LANGUAGE_COOKIE = "tb_lang"

Gettext = Callable[..., str]


def negotiate(
    cookie: str | None, accept_language: str | None, default: str = DEFAULT_LANGUAGE
) -> str:
    """The toggle's choice (a cookie) first, then the browser's Accept-Language, then
    ``default`` (zh-CN for pages; the API keeps English for clients that say nothing)."""
    if cookie in LANGUAGES:
        return cookie
    ranked: list[tuple[float, int, str]] = []
    for position, part in enumerate((accept_language or "").split(",")):
        tag, _, params = part.strip().partition(";")
        quality = 1.0
        if params.strip().startswith("q="):
            try:
                quality = float(params.strip()[2:])
            except ValueError:
                quality = 0.0
        ranked.append((-quality, position, tag.strip().lower()))
    for quality, _, tag in sorted(ranked):
        if quality == 0:
            continue
        if tag.startswith("zh"):
            return "zh-CN"
        if tag.startswith("en"):
            return "en"
    return default


@cache
def translations(language: str) -> NullTranslations:
    po = LOCALE_DIR / LANGUAGES.get(language, "zh_CN") / "LC_MESSAGES" / "messages.po"
    if not po.exists():
        return NullTranslations()
    with po.open("rb") as handle:
        catalog = read_po(handle)
    buffer = io.BytesIO()
    write_mo(buffer, catalog)
    buffer.seek(0)
    return Translations(buffer)


def gettext_for(language: str) -> Gettext:
    """``_("text %(name)s", name=…)``: translate, then fill in the named values."""
    catalog = translations(language)

    def gettext(msgid: str, /, **values: Any) -> str:
        text = catalog.gettext(msgid)
        return text % values if values else text

    return gettext


def N_(message: str) -> str:
    """Marks a message for the catalog (``pybabel extract -k N_``); translated where shown."""
    return message


# Titles of problems by slug, in English; the catalog translates them.
TITLES = {
    "invalid-input": N_("Invalid input"),
    "invalid-parameter": N_("Invalid parameter"),
    "weak-password": N_("Weak password"),
    "not-found": N_("Not found"),
    "forbidden": N_("Forbidden"),
    "second-factor-required": N_("Second factor required"),
    "enrolment-code-required": N_("Enrolment code required"),
    "password-change-required": N_("Password change required"),
    "conflict": N_("Conflict"),
    "unauthenticated": N_("Unauthenticated"),
    "invalid-credentials": N_("Invalid credentials"),
    "token-invalid": N_("Token invalid"),
    "login-throttled": N_("Login throttled"),
    "search-throttled": N_("Too many searches"),
    "internal": N_("Internal error"),
    "csrf": N_("The form has expired"),
}

# The domain's English messages people meet on the pages and at the API's door, as patterns:
# the named groups are filled into the translated text. A message not listed here is shown
# in English after its translated title, never dropped.
MESSAGES: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern), text)
    for pattern, text in (
        (r"wrong username or password", N_("wrong username or password")),
        (
            r"window_end is more than (?P<days>\d+) days ago: no record of it could be logged",
            N_("the visit ended more than %(days)s days ago: it can no longer be logged"),
        ),
        (
            r"window_start is more than (?P<days>\d+) days ahead",
            N_("the visit is more than %(days)s days ahead"),
        ),
        (r"window_end must be after window_start", N_("the end must be after the start")),
        (
            r"an active member has this (?P<field>phone|id_number): reject this registration "
            r"if it is the same person",
            N_(
                "an active member has this %(field)s: reject this registration if it is the "
                "same person"
            ),
        ),
        (r"wrong or reused one-time code", N_("wrong or reused one-time code")),
        (
            r"too many login attempts; try again in (?P<seconds>\d+) seconds",
            N_("too many login attempts; try again in %(seconds)s seconds"),
        ),
        (
            r"too many searches by phone or ID number; try again in (?P<seconds>\d+) seconds",
            N_("too many searches by phone or ID number; try again in %(seconds)s seconds"),
        ),
        (r"unknown or revoked token", N_("unknown or revoked token; log in again")),
        (r"token expired; log in again", N_("your login has expired; log in again")),
        (r"account disabled", N_("this account is disabled")),
        (r"send Authorization: Bearer <token>", N_("log in first")),
        (
            r"send one Authorization header, not several",
            N_("send one Authorization header, not several"),
        ),
        (r"current password is wrong", N_("current password is wrong")),
        (
            r"this one-time password has expired; ask your administrator for a new one",
            N_("this one-time password has expired; ask your administrator for a new one"),
        ),
        (
            r"this login was revoked; ask your organisation's administrator",
            N_("this login was revoked; ask your organisation's administrator"),
        ),
        (
            r"change your one-time password first \(POST /v1/auth/password\)",
            N_("change your one-time password first (POST /v1/auth/password)"),
        ),
        (
            r"enrolling a second factor needs the enrolment code your administrator issued",
            N_("enrolling a second factor needs the enrolment code your administrator issued"),
        ),
        (
            r"password must be at least (?P<n>\d+) characters",
            N_("password must be at least %(n)s characters"),
        ),
        (
            r"password must be at most (?P<n>\d+) characters",
            N_("password must be at most %(n)s characters"),
        ),
        (r"password is too common; choose another", N_("password is too common; choose another")),
        (r"password must not be the username", N_("password must not be the username")),
        (
            r"username must be 3-64 letters, digits or \._@\+-",
            N_("username must be 3-64 letters, digits or ._@+-"),
        ),
        (r"username (?P<name>\S+) is taken", N_("username %(name)s is taken")),
        (r"(?P<field>[a-z_.]+) must not be empty", N_("%(field)s must not be empty")),
        (r"no such page", N_("no such page")),
        (r"month must be YYYY-MM", N_("month must be YYYY-MM")),
        (r"month is in the future", N_("month is in the future")),
        (
            r"(?P<field>[a-z_]+) must be (?P<low>\d+)-(?P<high>\d+)",
            N_("%(field)s must be %(low)s-%(high)s"),
        ),
        (r"until needs a time zone", N_("until needs a time zone")),
        (
            r"reference looks like a phone or ID number; the public ledger carries it: use your "
            r"own order number",
            N_(
                "reference looks like a phone or ID number; the public ledger carries it: use "
                "your own order number"
            ),
        ),
        (
            r"(?P<field>[a-z_]+) must be a whole number",
            N_("%(field)s must be a whole number"),
        ),
        (
            r"(?P<field>[a-z_]+) must be an ISO 8601 time",
            N_("%(field)s must be an ISO 8601 time"),
        ),
        (
            r"this export holds personal data: give the recipient's public key",
            N_("this export holds personal data: give the recipient's public key"),
        ),
        (r"recipient_key is not base64", N_("recipient_key is not base64")),
        (
            r"recipient_key must be a 32-byte X25519 public key",
            N_("recipient_key must be a 32-byte X25519 public key"),
        ),
        (
            r"visit coverage is for staff, bank admins and auditors",
            N_("visit coverage is for staff, bank admins and auditors"),
        ),
        (
            r"visit_services names no service (?P<codes>.+)",
            N_("visit_services names no service %(codes)s"),
        ),
        (r"coverage_flags are some of: (?P<flags>.+)", N_("coverage_flags are some of: %(flags)s")),
        (
            r"the exchange is (?P<state>[a-z]+), not pending",
            N_("the exchange is %(state)s, not pending"),
        ),
        (
            r"the consent link of this exchange is no longer active",
            N_("the consent link of this exchange is no longer active"),
        ),
        (r"half must be YYYY-H1 or YYYY-H2", N_("half must be YYYY-H1 or YYYY-H2")),
        (r"(?P<half>\S+) has not ended yet", N_("%(half)s has not ended yet")),
        (
            r"(?P<half>\S+) is published already \(report (?P<id>\S+)\)",
            N_("%(half)s is published already (report %(id)s)"),
        ),
        (r"(?P<half>\S+) is being published already", N_("%(half)s is being published already")),
        (r"the log has no signed checkpoint yet", N_("the log has no signed checkpoint yet")),
        (
            r"the period cannot end after today \(UTC\)",
            N_("the period cannot end after today (UTC)"),
        ),
        (r"the period starts after it ends", N_("the period starts after it ends")),
        (
            r"(?P<field>from|to) is a day, YYYY-MM-DD",
            N_("%(field)s is a day, YYYY-MM-DD"),
        ),
        (
            r"more than (?P<count>\d+) entries in the period: ask for a shorter one",
            N_("more than %(count)s entries in the period: ask for a shorter one"),
        ),
        (r"name is masked, full or nickname", N_("name is masked, full or nickname")),
        (
            r"give a nickname of 1 to (?P<count>\d+) printable characters",
            N_("give a nickname of 1 to %(count)s printable characters"),
        ),
        (r"the form has expired", N_("the form has expired; please try again")),
    )
)
FIELDS = {
    "username": N_("username"),
    "password": N_("password"),
    "name": N_("name"),
    "phone": N_("phone"),
    "id_number": N_("ID number"),
    "old_password": N_("current password"),
    "new_password": N_("new password"),
}
# What a message's ``Words`` are called in the reader's language (``%(field)s``, the field at
# fault, among them), beyond ``FIELDS``; words not listed are looked up as they are. The
# policy's and the signals' fields are called as their forms label them.
# The supervision signals' thresholds, as the signals form labels them.
SIGNAL_LABELS = {
    "days": N_("Days to look back"),
    "near_cap_percent": N_("Near the daily cap: share of the cap, %"),
    "near_cap_days": N_("Near the daily cap: days"),
    "pair_factor": N_("Heavy pair: times the median pair"),
    "pair_min_minutes": N_("Heavy pair: at least minutes"),
    "staff_share_percent": N_("Staff confirming: share, %"),
    "staff_min_confirmations": N_("Staff confirming: at least confirmations"),
    "late_hours": N_("Late record: hours after the service"),
    "stored_cap_percent": N_("Near the stored-time cap: share of the cap, %"),
    "burst_factor": N_("Registrations: times the usual day"),
    "burst_min": N_("Registrations: at least members"),
}

WORDS = {
    "address": N_("address"),
    "health_notes": N_("health notes"),
    "notes": N_("notes"),
    "note": N_("note"),
    "reason": N_("reason"),
    "reveal_reason": N_("reason for seeing the personal data"),
    "reason_code": N_("reason"),
    "kind": N_("kind"),
    "relation": N_("relation"),
    "role": N_("role"),
    "scopes": N_("permissions"),
    "flag": N_("priority flag"),
    "birth_date": N_("birth date"),
    "minutes": N_("minutes"),
    "window_start": N_("start time"),
    "window_end": N_("end time"),
    "check_in": N_("check-in time"),
    "check_out": N_("check-out time"),
    "from": N_("first day"),
    "to": N_("last day"),
    "since": N_("start time"),
    "until": N_("end time"),
    "limit": N_("number per page"),
    "seq": N_("entry number"),
    "code": N_("code"),
    "category": N_("category"),
    "weight_permille": N_("weight (‰)"),
    "name_zh": N_("Chinese name"),
    "name_en": N_("English name"),
    "redemption_age": N_("Age from which members may redeem their time"),
    "stored_cap_minutes": N_("Most minutes a member may store (more goes to the pool)"),
    "daily_cap_minutes": N_("Most minutes a volunteer may log in one day"),
    "record_late_days": N_("Days after a visit within which it may be logged"),
    "timezone": N_("Time zone of the bank's days"),
    "gifts_allowed": N_("Members may give time to confirmed relatives"),
    "points_per_hour": N_("points per hour"),
    "points_unit": N_("points unit"),
    "star_hours": N_("hours of the star levels"),
    "visit_services": N_("services that count as visits"),
    "coverage_flags": N_("priority flags of the elders to visit"),
    **SIGNAL_LABELS,
    # The types a policy value must have (``%(kind)s``)
    "int": N_("a whole number"),
    "bool": N_("yes or no"),
    # Priority flags and states a conflict names (``%(flag)s``, ``%(status)s``)
    "living_alone": N_("lives alone"),
    "advanced_age": N_("advanced age"),
    "low_income": N_("low income"),
    "empty_nest": N_("empty nest"),
    "declined": N_("declined"),
    "expired": N_("expired"),
    # A service record's states a workflow refusal names (``%(status)s``)
    "logged": N_("logged"),
    "verified": N_("verified"),
}


# What the pages call the codes a field allows; a "must be one of" refusal lists them so
# (``Choices``, by the field at fault). A code no page labels is shown as it is.
FLAG_LABELS = {
    PriorityFlag.LIVING_ALONE.value: N_("Lives alone"),
    PriorityFlag.DISABLED.value: N_("Disabled"),
    PriorityFlag.ADVANCED_AGE.value: N_("Advanced age"),
    PriorityFlag.LOW_INCOME.value: N_("Low income"),
    PriorityFlag.EMPTY_NEST.value: N_("Empty nest"),
}
ORG_KINDS = {
    "community_centre": N_("community centre"),
    "service_station": N_("service station"),
    "social_organisation": N_("social organisation"),
}
PARTNER_SCOPES = {
    "read_points": N_("read balances"),
    "read_statement": N_("read statements"),
    "receive_webhooks": N_("receive webhooks"),
    "request_exchange": N_("request exchanges"),
}
# What the public ledger says of a grant or a reversal: a code from a fixed list
# (docs/privacy.md); the administrator's own words stay with the bank.
GRANT_REASONS = {
    "regular_support": N_("Regular support"),
    "emergency_support": N_("Emergency support"),
    "festival_care": N_("Festival care"),
    "bank_decision": N_("Decision of the bank"),
    "other": N_("Other"),
}
REVERSAL_REASONS = {
    "duplicate": N_("Recorded twice"),
    "wrong_minutes": N_("Wrong minutes"),
    "wrong_member": N_("Wrong member"),
    "not_served": N_("The service did not happen"),
    "mistake": N_("A mistake in operation"),
    "other": N_("Other"),
}
# The states of requests, service records and reversal requests, as the lists show them.
STATUS_LABELS = {
    "open": N_("open"),
    "assigned": N_("assigned"),
    "completed": N_("completed"),
    "cancelled": N_("cancelled"),
    "logged": N_("logged"),
    "confirmed": N_("confirmed"),
    "verified": N_("verified"),
    "rejected": N_("rejected"),
    "pending": N_("pending"),
    "approved": N_("approved"),
}
CHOICE_LABELS = {
    "flag": FLAG_LABELS,
    "kind": ORG_KINDS,
    "scopes": PARTNER_SCOPES,
    "reason_code": {**GRANT_REASONS, **REVERSAL_REASONS},
    "status": STATUS_LABELS,
}
# A refusal of a code not on a field's list (the domain's ``parse_enum``, the API's schema).
NOT_A_CHOICE = N_("%(field)s must be one of: %(allowed)s")


def describe(slug: str, message: str, language: str) -> tuple[str, str]:
    """(title, detail) of a refusal in ``language``: known messages fully translated, others in
    English after the translated title."""
    _ = gettext_for(language)
    title = _title(slug, _)
    for pattern, text in MESSAGES:
        match = pattern.fullmatch(message)
        if match:
            values = {
                k: _(FIELDS[v]) if k == "field" and v in FIELDS else v
                for k, v in match.groupdict().items()
            }
            return title, _(text, **values)
    if (translated := _(message)) != message:  # a message of the web app itself
        return title, translated
    if language == "en" or title == message:
        return title, message
    return title, f"{title}: {message}"


def describe_error(exc: AccountsError, language: str, *, codes: bool = False) -> tuple[str, str]:
    """(title, detail) of a domain refusal in ``language``: its message translated whole by the
    catalog with its values filled in (words among them translated too), else as ``describe``
    finds it. ``codes``: the codes a field allows are listed with their labels (for the API,
    whose callers send the codes; the pages' forms offer the labels). Several problems at once
    (``InvalidFields``) are each described, in order."""
    _ = gettext_for(language)
    if isinstance(exc, InvalidFields):
        details = [describe_error(problem, language, codes=codes)[1] for problem in exc.problems]
        return _title(exc.slug, _), ("; " if language == "en" else "；").join(details)
    if language == "en" or _(exc.template) == exc.template:
        return describe(exc.slug, str(exc), language)
    if "%(" not in exc.template:  # nothing to fill in (and a "%" in the text stays as it is)
        return _title(exc.slug, _), _(exc.template)
    values = {k: _value(v, exc.field, _, codes) for k, v in exc.values.items()}
    return _title(exc.slug, _), _(exc.template, **values)


def describe_choices(field: str, allowed: Choices, language: str) -> str:
    """A value not among the codes ``allowed`` for ``field``, as the API says it: the codes in
    English; in another language the field's name and each code's label with the code."""
    if language == "en":
        return f"{field} must be one of: {allowed}"
    _ = gettext_for(language)
    name = field.rpartition(".")[2]
    return _(
        NOT_A_CHOICE, field=_value(Words(name), name, _), allowed=_value(allowed, name, _, True)
    )


def care_detail(exc: CareError, language: str) -> str:
    """A workflow refusal in ``language``: its case translated whole with its values filled in
    (why this check-in, with its numbers), else the Chinese sentence of its kind."""
    if language == "en":
        return str(exc)
    _ = gettext_for(language)
    if _(exc.template) == exc.template:
        return exc.zh
    if "%(" not in exc.template:
        return _(exc.template)
    values = {k: _value(v, exc.field, _) for k, v in exc.values.items()}
    return _(exc.template, **values)


def ledger_detail(exc: LedgerError, language: str) -> str:
    """A ledger refusal in ``language``: its message translated whole with its values filled
    in, else as the ledger said it (English)."""
    if language == "en":
        return str(exc)
    _ = gettext_for(language)
    if _(exc.template) == exc.template:
        return str(exc)
    return _(exc.template, **exc.values) if exc.values else _(exc.template)


def _value(value: object, field: str | None, _: Gettext, codes: bool = False) -> object:
    """A message's value as the reader calls it: words translated, the codes a field allows
    by their labels, each with its code after it where ``codes`` (not reached in English,
    whose message stays as it is)."""
    if isinstance(value, Words) and value:
        return _(WORDS.get(value) or FIELDS.get(value, value))
    if isinstance(value, Choices):
        labels = CHOICE_LABELS.get(field or "", {})
        return "、".join(_choice(code, labels, _, codes) for code in value)
    return value


def _choice(code: str, labels: dict[str, str], _: Gettext, codes: bool) -> str:
    if code not in labels:
        return code
    return f"{_(labels[code])}（{code}）" if codes else _(labels[code])


def _title(slug: str, _: Gettext) -> str:
    return _(TITLES.get(slug, slug.replace("-", " ").capitalize()))


# The JSON decoder's messages (msgspec's, strict), for callers who asked for another language
# than English; the type names in them are translated too. A message not listed stays as it is.
DECODED_TYPES = {
    "int": N_("an integer"),
    "float": N_("a number"),
    "str": N_("text"),
    "bool": N_("true or false"),
    "array": N_("a list"),
    "object": N_("an object"),
    "null": N_("null"),
    "datetime": N_("a date and time"),
    "date": N_("a date"),
}
DECODING_MESSAGES: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern), text)
    for pattern, text in (
        (
            r"Expected `(?P<want>[^`]+)`, got `(?P<got>[^`]+)`.*",
            N_("expected %(want)s, got %(got)s"),
        ),
        (
            r"Expected `(?P<want>[^`]+)` of length (?P<op>[<>]=?) (?P<n>\d+).*",
            N_("expected %(want)s of length %(op)s %(n)s"),
        ),
        (
            r"Expected `(?P<want>[^`]+)` (?P<op>[<>]=?) (?P<n>-?[0-9.]+).*",
            N_("expected %(want)s %(op)s %(n)s"),
        ),
        (
            r"Object missing required field `(?P<name>[^`]+)`.*",
            N_("the required field %(name)s is missing"),
        ),
        (r"Object contains unknown field `(?P<name>[^`]+)`.*", N_("unknown field %(name)s")),
        (
            r"Invalid enum value (?P<value>.+?)(?: - at `[^`]*`)?",
            N_("%(value)s is not one of the allowed values"),
        ),
        (r"(JSON is malformed|Input data was truncated).*", N_("the body is not valid JSON")),
        (r"Invalid RFC3339 encoded datetime.*", N_("expected a date and time (RFC 3339)")),
        (r"Invalid UTF-8 encoded string.*", N_("the text is not valid UTF-8")),
    )
)


def describe_decoding(message: str, language: str) -> str:
    """The decoder's ``message`` in ``language`` (English: as the decoder said it)."""
    if language == "en":
        return message
    _ = gettext_for(language)
    for pattern, text in DECODING_MESSAGES:
        match = pattern.fullmatch(message)
        if match:
            values = {
                k: _type_words(v, _) if k in ("want", "got") else v
                for k, v in match.groupdict().items()
            }
            return _(text, **values)
    return message


def _type_words(types: str, _: Gettext) -> str:
    """``int | null`` → the words for each type, joined by a slash."""
    return " / ".join(_(DECODED_TYPES.get(t, t)) for t in types.split(" | "))
