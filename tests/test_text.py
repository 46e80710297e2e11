"""Normalisation, folding and diacritic restoration of Vietnamese text."""

import unicodedata

from bot.engine.text import (
    bigrams,
    clean,
    fold,
    has_diacritics,
    lexical_form,
    nfc,
    normalize,
    reflow,
    restoration_table,
    restore_diacritics,
    syllables,
)


def test_fold_maps_d_with_stroke_which_unicode_decomposition_does_not():
    assert unicodedata.normalize("NFD", "đ") == "đ"  # why fold() must do it itself
    assert fold("Đăng ký ĐẤT ĐAI đường") == "dang ky dat dai duong"


def test_fold_is_the_same_for_composed_and_decomposed_input():
    composed = "Thủ tục hộ tịch"
    decomposed = unicodedata.normalize("NFD", composed)
    assert decomposed != composed
    assert fold(decomposed) == fold(composed) == "thu tuc ho tich"
    assert nfc(decomposed) == composed


def test_normalize_composes_and_fixes_old_style_tone_marks():
    assert normalize(unicodedata.normalize("NFD", "hoà bình")) == "hòa bình"
    assert normalize("   ") == ""


def test_has_diacritics():
    assert has_diacritics("căn cước")
    assert has_diacritics("Đi")
    assert not has_diacritics("lam can cuoc cong dan can giay to gi")


def test_syllables_merge_i_and_y_spellings_and_keep_codes():
    assert syllables("Đăng kí lý lịch") == syllables("dang ky li lich") == ["dang", "ki", "li", "lich"]
    assert syllables("mã 1.001193, quy định") == ["ma", "1.001193", "quy", "dinh"]


def test_lexical_form_adds_bigrams_line_by_line():
    assert bigrams(["ket", "hon", "o"]) == ["ket_hon", "hon_o"]
    assert lexical_form("Kết hôn\nở đâu") == "ket hon ket_hon\no dau o_dau"


def test_clean_strips_html_control_characters_and_caps_length():
    assert clean("<b>Xin</b> chào\x00\x07 &amp; bạn\u200b") == "Xin chào & bạn"
    assert clean("a" * 20 + " " + "b" * 20000, limit=100) == "a" * 20 + " " + "b" * 79
    assert len(clean("từ " * 5000)) <= 1000


def test_reflow_joins_wrapped_lines_but_keeps_lists():
    text = "Một câu dài\nbị ngắt dòng.\n\n- mục một\n  còn tiếp\n- mục hai"
    assert reflow(text) == "Một câu dài bị ngắt dòng.\n\n- mục một còn tiếp\n- mục hai"


def test_restore_diacritics_from_the_corpus():
    table = restoration_table(["Đăng ký kết hôn mất bao lâu?", "Làm căn cước công dân cần giấy tờ gì", "mất thẻ"])
    assert restore_diacritics("dang ky ket hon mat bao lau", table) == "đăng ký kết hôn mất bao lâu"
    assert restore_diacritics("lam can cuoc cong dan, CCCD", table) == "làm căn cước công dân , CCCD"
    # Text typed with diacritics is the citizen's own: never changed.
    assert restore_diacritics("làm can cuoc", table) == "làm can cuoc"


def test_acronyms_are_learned_from_procedure_names():
    from bot.engine.text import acronym_table, acronyms_in

    names = ["Cấp giấy phép lưu hành xe quá tải", "Cấp lại giấy phép lưu hành xe", "Đăng ký biển số xe",
             "Cấp đổi đăng ký biển số"]
    table = acronym_table(names)
    assert table["gplhx"] == "giấy phép lưu hành xe"
    assert table["dkbs"] == "đăng ký biển số"  # Đ counts as D
    assert acronyms_in("Xe nặng 46 tấn có phải xin GPLHX không? Còn ĐKBS?", table) == [
        "giấy phép lưu hành xe", "đăng ký biển số"]
    assert acronyms_in("gplhx viết thường không phải viết tắt", table) == []
