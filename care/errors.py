"""Domain errors of the workflow, each with a stable slug and a message in English and Chinese.

The hierarchy::

    CareError                         a rule of the time bank refuses the action (422)
    ├── InsufficientBalance           insufficient-balance    余额不足
    ├── NotEligible                   not-eligible            不符合兑换条件
    ├── OverlappingRecord             overlapping-record      服务时间与已有记录重叠
    ├── DailyCapExceeded              daily-cap-exceeded      超过每日记录上限
    ├── SelfVerification              self-verification       不能确认或审核自己的记录
    ├── NotARelative                  not-a-relative          只能转赠给已确认的直系亲属
    ├── GiftsDisabled                 gifts-disabled          本时间银行不允许转赠
    ├── FutureRecord                  future-record           不能记录未来的服务
    ├── InvalidDuration               invalid-duration        服务时长无效
    ├── NotPriorityElder              not-priority-elder      只能向重点关爱老人发放
    ├── InvalidSignature              invalid-signature       设备签名无效
    ├── InvalidConfirmationCode       invalid-confirmation-code  确认码无效或已过期
    ├── MemberNotActive               member-not-active       成员尚未通过审核或已停用
    ├── LateRecord                    late-record             服务记录提交过晚
    ├── OutsideRequest                outside-request         服务记录超出需求的时间或时长
    ├── TooManyCodeAttempts           too-many-code-attempts (429)  确认码尝试次数过多
    └── WrongState                    wrong-state (409)       当前状态不允许此操作

A message is English with ``%(name)s`` where a value goes, the values given apart, as
``accounts.errors`` has it: the pages and the API translate the case whole
(``web.i18n.care_detail``), and fall back on the kind's Chinese sentence (``zh``) for a case the
catalog does not know.

Generic refusals (not found, forbidden, bad input) reuse ``accounts.errors``. The statuses in
parentheses are the web layer's (``web.statuses``); the domain raises no HTTP status.
"""

from __future__ import annotations

from accounts.errors import Words


class CareError(Exception):
    slug = "care-rule"
    zh = "操作被拒绝"

    def __init__(
        self, message: str, *, field: str | None = None, zh: str | None = None, **values: object
    ) -> None:
        self.template = message
        self.values: dict[str, object] = {"field": Words(field or ""), **values}
        try:
            super().__init__(message % self.values if "%(" in message else message)
        except (KeyError, ValueError, TypeError):  # a message quoting text that holds a stray %
            super().__init__(message)
        self.field = field
        if zh is not None:
            self.zh = zh


class InsufficientBalance(CareError):
    slug = "insufficient-balance"
    zh = "余额不足"


class NotEligible(CareError):
    slug = "not-eligible"
    zh = "不符合兑换条件（未满兑换年龄且不是重点关爱老人）"


class OverlappingRecord(CareError):
    slug = "overlapping-record"
    zh = "服务时间与已有记录重叠"


class DailyCapExceeded(CareError):
    slug = "daily-cap-exceeded"
    zh = "超过每日服务时长记录上限"


class SelfVerification(CareError):
    slug = "self-verification"
    zh = "不能确认或审核自己的服务记录"


class NotARelative(CareError):
    slug = "not-a-relative"
    zh = "只能转赠给已确认的直系亲属"


class GiftsDisabled(CareError):
    slug = "gifts-disabled"
    zh = "本时间银行不允许转赠"


class FutureRecord(CareError):
    slug = "future-record"
    zh = "不能记录尚未发生的服务"


class InvalidDuration(CareError):
    slug = "invalid-duration"
    zh = "服务时长无效"


class NotPriorityElder(CareError):
    slug = "not-priority-elder"
    zh = "公益池时间只能发放给重点关爱老人"


class InvalidSignature(CareError):
    slug = "invalid-signature"
    zh = "设备签名无效"


class InvalidConfirmationCode(CareError):
    slug = "invalid-confirmation-code"
    zh = "确认码无效或已过期"


class WrongState(CareError):
    slug = "wrong-state"
    zh = "当前状态不允许此操作"


class MemberNotActive(CareError):
    """A pending, rejected or disabled member takes part in nothing: no requests, records,
    confirmations, codes, gifts, grants or deposits (hours are minted only between members
    the organisation approved)."""

    slug = "member-not-active"
    zh = "该成员尚未通过审核、已被拒绝或已停用，不能参与服务和时间流转"


class LateRecord(CareError):
    """A record logged long after the service (the policy's ``record_late_days``)."""

    slug = "late-record"
    zh = "服务结束太久才提交记录，请联系服务中心处理"


class OutsideRequest(CareError):
    """A record for a request outside its time window or far above its minutes."""

    slug = "outside-request"
    zh = "服务记录超出需求的时间范围或服务时长"


class TooManyCodeAttempts(CareError):
    """Confirmation codes are six digits: guesses are limited per record, per person trying
    and per elder whose codes are tried (``care.codes.CODE_LIMITS``)."""

    slug = "too-many-code-attempts"
    zh = "确认码错误次数过多，请稍后再试或由老人、家属或工作人员确认"
