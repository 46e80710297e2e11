"""What citizens read when the assistant cannot answer them: the hotline and the apologies, one wording each.

The engine's answers, the service desk, the handoff and every channel take these texts from here, so a citizen
reads the same words whichever way they ask. Imports nothing from the project.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping

# The national portal's hotline, offered when the knowledge base names none (`duong_day_nong` in lien-ket.yaml).
DEFAULT_HOTLINE: Mapping[str, str] = {"name": "Tổng đài hỗ trợ Cổng Dịch vụ công quốc gia", "number": "18001096",
                                      "url": "https://dichvucong.gov.vn"}
# A fault kept the assistant from answering; the error is logged with the same id.
APOLOGY = ("Xin lỗi, hệ thống đang gặp sự cố nên chưa trả lời được tin nhắn của bạn. Bạn vui lòng thử lại sau, "
           "hoặc gọi {hotline}. (mã lỗi {error_id})")
# The question was read, but the knowledge base holds nothing sure enough to answer it.
NOT_FOUND = "Xin lỗi, tôi chưa tìm thấy thông tin đủ chắc chắn để trả lời câu hỏi này."
CALL_OR_LOOK_UP = " Bạn có thể gọi {hotline} hoặc tra cứu trên {url}."
# The citizen asks faster than the per-user limit allows.
BUSY = "Bạn gửi nhanh quá, vui lòng chờ khoảng {seconds} giây rồi hỏi tiếp nhé."
# Too many citizens are asking at once: the expected wait passes `[answer] max_wait_s`, so the question is not queued.
OVERLOADED = ("Hệ thống đang có quá nhiều người hỏi cùng lúc nên chưa trả lời ngay được. Bạn vui lòng hỏi lại sau "
              "khoảng một phút, hoặc gọi {hotline}.")
# A sticker, photo, voice message, file or location: only text is read.
NON_TEXT = ("Xin lỗi, tôi chỉ đọc được tin nhắn chữ, chưa xem được hình ảnh, nhãn dán, tin nhắn thoại hay tệp. "
            "Bạn vui lòng gõ câu hỏi về thủ tục hành chính, ví dụ: “Làm thẻ căn cước cần giấy tờ gì?”")


def call(hotline: Mapping[str, str] | None) -> str:
    """'Tổng đài hỗ trợ Cổng Dịch vụ công quốc gia 18001096': whom to call (the default when none is given)."""
    hotline = hotline or DEFAULT_HOTLINE
    return f"{hotline['name']} {hotline['number']}"


def overloaded(hotline: Mapping[str, str] | None) -> str:
    """The busy reply: try again in a minute, or call the hotline."""
    return OVERLOADED.format(hotline=call(hotline))


def error_id() -> str:
    """A short id for a logged error, read out to the hotline by the citizen who saw it."""
    return uuid.uuid4().hex[:8]


def apology(hotline: Mapping[str, str] | None, error: str) -> str:
    """The apology for a fault, with the hotline and the id under which the error was logged."""
    return APOLOGY.format(hotline=call(hotline), error_id=error)


def not_found(hotline: Mapping[str, str] | None) -> str:
    """The decline: nothing sure enough was found; the hotline and portal when the knowledge base names them."""
    if not hotline:
        return NOT_FOUND
    return NOT_FOUND + CALL_OR_LOOK_UP.format(hotline=call(hotline), url=hotline["url"])
