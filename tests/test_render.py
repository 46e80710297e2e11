"""The one renderer: an answer's knowledge Markdown as plain text, Telegram HTML and Zalo text."""

from telegram.constants import MessageLimit

from bot.channels.render import TELEGRAM_LIMIT, html_visible, plain, telegram_html, to_text, zalo_text
from bot.engine.answer import Answer
from bot.service.desk import Reply

MARKDOWN = "**Lưu ý**: xem [Cổng](https://dichvucong.gov.vn)\n- mục một\n- mục <hai> & ba"


def test_plain_removes_markdown_emphasis_and_spells_out_links():
    assert plain("**Lưu ý**: xem [Cổng](https://dichvucong.gov.vn)") == "Lưu ý: xem Cổng (https://dichvucong.gov.vn)"


def test_every_channel_shows_the_same_words_of_the_knowledge_markdown():
    answer = Answer("q", "answer", title="Thủ tục", parts=[("Lệ phí", MARKDOWN)])
    text = to_text(answer)
    assert text == "Thủ tục\n\nLệ phí:\nLưu ý: xem Cổng (https://dichvucong.gov.vn)\n- mục một\n- mục <hai> & ba"
    # Telegram shows the link as its label and the bullets as dots; Zalo is the plain text after the desk's notes.
    assert html_visible(telegram_html(Reply(answer))) == (
        text.replace(" (https://dichvucong.gov.vn)", "").replace("\n- ", "\n• "))
    assert zalo_text(Reply(answer, notes=["Ghi chú"])) == "Ghi chú\n\n" + to_text(answer, links=False)


def test_the_telegram_limit_is_telegrams():
    assert TELEGRAM_LIMIT == MessageLimit.MAX_TEXT_LENGTH
