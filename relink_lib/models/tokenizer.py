"""A word-level tokenizer built offline from a training corpus.

The ladder's models cannot download a tokenizer, so each rung builds its own from the
text it is trained on with the ``tokenizers`` library (lower-casing, accent stripping,
whitespace + punctuation split, a word-level vocabulary of the frequent words) and wraps it
as a ``PreTrainedTokenizerFast`` so that ``save_pretrained`` / ``AutoTokenizer.from_pretrained``
work like any HF checkpoint. Every sequence is ``[BOS] words... [EOS]``; the EOS position is
where CLIP's text tower pools.
"""

from __future__ import annotations

from typing import Iterable

from tokenizers import Tokenizer, normalizers, pre_tokenizers, processors
from tokenizers.models import WordLevel
from tokenizers.trainers import WordLevelTrainer
from transformers import PreTrainedTokenizerFast

PAD, UNK, BOS, EOS = "[PAD]", "[UNK]", "[BOS]", "[EOS]"
SPECIAL_TOKENS: tuple[str, ...] = (PAD, UNK, BOS, EOS)


def build_tokenizer(
    corpus: Iterable[str], *, vocab_size: int = 4096, min_frequency: int = 2, max_length: int = 128
) -> PreTrainedTokenizerFast:
    """Train a word-level tokenizer on ``corpus`` and wrap it for ``transformers``.

    vocab_size: the most frequent ``vocab_size - 4`` words are kept (plus the 4 special
    tokens, ids 0-3: PAD, UNK, BOS, EOS); rarer words become UNK. max_length: the context
    length in tokens (``model_max_length``), BOS and EOS included. Deterministic: ties in
    frequency are broken by the trainer's stable order.
    """
    if vocab_size < len(SPECIAL_TOKENS) + 1:
        raise ValueError(f"vocab_size={vocab_size}: expected at least {len(SPECIAL_TOKENS) + 1}")
    if max_length < 3:
        raise ValueError(f"max_length={max_length}: expected at least 3 (BOS, one word, EOS)")
    texts = [t for t in corpus]
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise TypeError(f"corpus[{i}]: expected str, got {type(t).__name__}")
    tok = Tokenizer(WordLevel(unk_token=UNK))
    tok.normalizer = normalizers.Sequence([normalizers.NFD(), normalizers.Lowercase(), normalizers.StripAccents()])
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    trainer = WordLevelTrainer(
        vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=list(SPECIAL_TOKENS), show_progress=False
    )
    tok.train_from_iterator(texts, trainer=trainer)
    bos_id, eos_id = tok.token_to_id(BOS), tok.token_to_id(EOS)
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A {EOS}", pair=f"{BOS} $A {EOS} $B {EOS}", special_tokens=[(BOS, bos_id), (EOS, eos_id)]
    )
    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token=UNK,
        pad_token=PAD,
        bos_token=BOS,
        eos_token=EOS,
        model_max_length=max_length,
        padding_side="right",
        truncation_side="right",
    )
    return wrapped
