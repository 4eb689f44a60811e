"""The fee fields of a CMPP_SUBMIT as one value the caller passes: who pays, how, and how much.

`Fee` holds them as they go on the wire: FeeType (2 ASCII digits: 01 free, 02 per message, 03
monthly, 04 capped, 05 charged by the SP), FeeCode (the amount in fen, 6 ASCII digits),
Fee_UserType (0 the destination pays, 1 the source, 2 the SP, 3 the number in Fee_terminal_Id),
Fee_terminal_Id and, in 3.0, Fee_terminal_type. `FREE` is a free message; `Fee.per_message(fen)` and
`Fee.monthly(fen)` build the others (or the constructor does); `problem()` says what makes one unfit to send, and
the codec refuses to encode such a fee. A decoded SUBMIT keeps the fee fields as the SP wrote
them, so a gateway (the simulator) can answer a bad one with Result 5.
"""

from __future__ import annotations

from dataclasses import dataclass

from .constants import FeeType, FeeUserType

MAX_FEN = 999999  # FeeCode is 6 digits


@dataclass(frozen=True, slots=True)
class Fee:
    fee_type: str = FeeType.FREE.value
    fee_code: str = "000000"
    user_type: int = FeeUserType.DESTINATION
    terminal_id: str = ""  # Fee_terminal_Id: only with user_type 3
    terminal_type: int = 0  # 3.0 Fee_terminal_type: 0 a real number, 1 a pseudo-code

    @classmethod
    def per_message(cls, fen: int, user_type: int = FeeUserType.DESTINATION, terminal_id: str = "") -> Fee:
        return cls(FeeType.PER_MESSAGE.value, _code(fen), user_type, terminal_id)

    @classmethod
    def monthly(cls, fen: int, user_type: int = FeeUserType.DESTINATION, terminal_id: str = "") -> Fee:
        return cls(FeeType.MONTHLY.value, _code(fen), user_type, terminal_id)

    @property
    def fen(self) -> int | None:
        """FeeCode as an amount in fen; None when it is not digits."""
        code = self.fee_code.strip()
        return int(code) if code.isascii() and code.isdigit() else None

    def problem(self) -> str | None:
        """What makes this fee unfit to send, or None."""
        types = [t.value for t in FeeType]
        if self.fee_type not in types:
            return f"FeeType {self.fee_type!r} is not one of {', '.join(types)}"
        if len(self.fee_code) != 6 or self.fen is None:
            return f"FeeCode {self.fee_code!r} is not 6 digits (fen)"
        if self.fee_type == FeeType.FREE and self.fen:
            return f"FeeType 01 (free) with FeeCode {self.fee_code}"
        if self.user_type not in tuple(FeeUserType):
            return f"Fee_UserType {self.user_type} is not 0..3"
        if (self.user_type == FeeUserType.FEE_TERMINAL) != bool(self.terminal_id):
            return "Fee_terminal_Id is given exactly when Fee_UserType is 3"
        if self.terminal_type not in (0, 1):
            return f"Fee_terminal_type {self.terminal_type} is not 0 or 1"
        return None


def _code(fen: int) -> str:
    if not isinstance(fen, int) or not 0 <= fen <= MAX_FEN:
        raise ValueError(f"fee {fen!r} fen is not 0..{MAX_FEN}")
    return f"{fen:06d}"


FREE = Fee()
