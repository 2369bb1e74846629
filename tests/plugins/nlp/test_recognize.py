"""Recognition of tokenizers and text models in slots; import hygiene."""

from __future__ import annotations

import subprocess
import sys

from pipetune import Pipeline, Stage
from pipetune.plugins.nlp import recognize

from .toys import ToyWordPiece


def test_importing_the_plugin_pulls_in_no_heavy_library():
    code = (
        "import sys, pipetune, pipetune.plugins.nlp.plugin, pipetune.plugins.nlp; "
        "heavy = [m for m in ('torch', 'transformers', 'tokenizers') if m in sys.modules]; "
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_transformers_tokenizers_python_and_rust(legacy_tokenizer, fast_tokenizer):
    slow = recognize.tokenizer_info(legacy_tokenizer)
    assert slow.kind == recognize.PYTHON_TRANSFORMERS and slow.slow
    assert slow.vocab_size == 30522 and slow.lowercase is True and slow.algorithm == "WordPiece"
    assert slow.model_max_length == 512
    fast = recognize.tokenizer_info(fast_tokenizer)
    assert fast.kind == recognize.RUST_TRANSFORMERS and not fast.slow
    assert fast.lowercase is True and fast.algorithm == "WordPiece"


def test_hf_tokenizers_and_python_vocab_tokenizers(tokenizers_lib, minilm_path, legacy_tokenizer):
    rust = tokenizers_lib.Tokenizer.from_file(str(minilm_path / "tokenizer.json"))
    info = recognize.tokenizer_info(rust)
    assert info.kind == recognize.RUST_TOKENIZERS and info.vocab_size == 30522
    toy = recognize.tokenizer_info(ToyWordPiece(dict(legacy_tokenizer.vocab)))
    assert toy.kind == recognize.PYTHON_VOCAB and toy.slow and toy.algorithm == "WordPiece"


def test_things_that_are_not_tokenizers():
    for value in (None, "text", 3, {"a": 1}, object(), [1, 2]):
        assert recognize.tokenizer_info(value) is None

    class HasVocabOnly:
        def __init__(self):
            self.vocab = {"a": 0}

    assert recognize.tokenizer_info(HasVocabOnly()) is None


def test_text_models_and_their_attention(torch, tiny_bert):
    info = recognize.text_model_info(tiny_bert)
    assert info.transformers and info.attention == "eager" and info.hidden_size == 32
    assert info.parameters > 0 and info.max_positions == 512 and info.dtype == "float32"
    assert recognize.text_model_info(torch.nn.Linear(3, 3)) is None
    emb = torch.nn.Sequential(torch.nn.Embedding(10, 4), torch.nn.Linear(4, 2))
    plain = recognize.text_model_info(emb)
    assert plain is not None and not plain.transformers and plain.attention is None


def test_stage_recognition_finds_slots_and_blocks(legacy_tokenizer, tiny_bert, tiny_head):
    from pipetune.plugins.nlp.blocks import document_classifier

    pipeline = document_classifier(legacy_tokenizer, tiny_bert, tiny_head)
    found = {r.stage: r for r in recognize.recognize_pipeline(pipeline)}
    assert found["tokenize"].tokenizer_slot == "tokenizer"
    assert found["tokenize"].block == "nlp.tokenize"
    assert found["embed"].model_slot == "model" and found["embed"].block == "nlp.embed"

    def user_stage(text, *, tokenizer, model):
        return text

    stage = Stage("both", user_stage, slots={"tokenizer": legacy_tokenizer, "model": tiny_bert})
    both = recognize.recognize_stage(stage)
    assert both.tokenizer is not None and both.model is not None and both.block is None
    assert recognize.recognize_pipeline(Pipeline("p", (Stage("x", abs),))) == []


def test_iter_texts_walks_nested_inputs():
    value = {"title": "a", "body": ["b", ("c", b"d")], "n": 3}
    assert list(recognize.iter_texts(value)) == ["a", "b", "c", "d"]


def test_iter_texts_skips_binary_bytes():
    """A JPEG's bytes beside a caption are not text to tokenize."""
    jpeg = b"\xff\xd8\xff\xe0" + bytes(range(256)) * 100
    assert list(recognize.iter_texts({"caption": "a cat", "image": jpeg})) == ["a cat"]
