"""Tiny causal LMs built in code (no download): a character tokenizer and GPT-2 / Llama configs.

Used by the tests and the tiny-model experiment. :func:`train_answer_model` trains a tiny GPT-2 for a few
seconds on a task whose answer distribution is known (:class:`AnswerTask`), so best-of-N and SFT-sharpening
have exact targets: the trained model's own distribution over the task's answers is computed exactly by
scoring every answer (:func:`answer_distribution`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from sharpsim.bridge._deps import require_torch, require_transformers

torch = require_torch()
transformers = require_transformers()

__all__ = ["AnswerTask", "answer_distribution", "char_tokenizer", "tiny_gpt2", "tiny_llama", "train_answer_model"]

DEFAULT_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789 =+?:;.,"


def char_tokenizer(chars: str = DEFAULT_CHARS, *, eos: str | None = "$", pad: str | None = "_",
                   padding_side: str = "left"):
    """A character-level ``PreTrainedTokenizerFast`` (one token per character, no merges).

    ``eos`` / ``pad`` are single characters added to the vocabulary (``None`` leaves them unset, to test the
    error paths; ``pad == eos`` reproduces SmolLM2's setup). Decoding concatenates characters.
    """
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers

    vocab: dict[str, int] = {}
    for ch in ["<unk>"] + [c for c in (eos, pad) if c is not None] + list(chars):
        vocab.setdefault(ch, len(vocab))
    tk = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    tk.decoder = decoders.Fuse()
    kwargs = {"unk_token": "<unk>"}
    if eos is not None:
        kwargs["eos_token"] = eos
    if pad is not None:
        kwargs["pad_token"] = pad
    tok = transformers.PreTrainedTokenizerFast(tokenizer_object=tk, **kwargs)
    tok.padding_side = padding_side
    return tok


def _special(tok):
    eos = tok.eos_token_id
    pad = tok.pad_token_id if tok.pad_token_id is not None else eos
    return eos, pad


def tiny_gpt2(tokenizer, *, n_embd: int = 32, n_layer: int = 2, n_head: int = 2, n_positions: int = 64,
              seed: int = 0):
    """A randomly initialised GPT-2 (absolute position embeddings, eager attention), float32, eval mode."""
    eos, pad = _special(tokenizer)
    cfg = transformers.GPT2Config(
        vocab_size=len(tokenizer), n_embd=n_embd, n_layer=n_layer, n_head=n_head, n_positions=n_positions,
        bos_token_id=eos, eos_token_id=eos, pad_token_id=pad, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
        attn_implementation="eager",  # at these sizes SDPA's dispatch costs more than the matmuls it saves
    )
    torch.manual_seed(seed)
    return transformers.GPT2LMHeadModel(cfg).float().eval()


def tiny_llama(tokenizer, *, hidden_size: int = 32, num_hidden_layers: int = 2, num_attention_heads: int = 2,
               max_position_embeddings: int = 64, seed: int = 0):
    """A randomly initialised Llama (rotary position embeddings), float32, eval mode."""
    eos, pad = _special(tokenizer)
    cfg = transformers.LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=hidden_size, intermediate_size=2 * hidden_size,
        num_hidden_layers=num_hidden_layers, num_attention_heads=num_attention_heads,
        num_key_value_heads=num_attention_heads, max_position_embeddings=max_position_embeddings,
        bos_token_id=eos, eos_token_id=eos, pad_token_id=pad, tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    return transformers.LlamaForCausalLM(cfg).float().eval()


@dataclasses.dataclass(frozen=True)
class AnswerTask:
    """Prompts with a known answer distribution: prompt ``prompts[i]`` is answered by ``answers[j]``
    with probability ``probs[i][j]``; ``correct[i]`` is the ground-truth answer (for accuracy metrics).

    The default has a clear mode per prompt (so best-of-N with log-prob self-reward concentrates on it) and,
    in prompt ``b=``, a mode that is *not* the correct answer (the sharpening mechanism can fail).
    """

    prompts: tuple[str, ...] = ("a=", "b=", "c=")
    answers: tuple[str, ...] = ("x", "yy", "zzz")
    probs: tuple[tuple[float, ...], ...] = ((0.6, 0.3, 0.1), (0.25, 0.55, 0.2), (0.45, 0.3, 0.25))
    correct: tuple[str, ...] = ("x", "x", "x")

    def sample(self, rng, n_per_prompt: int) -> tuple[list[str], list[str]]:
        """``n_per_prompt`` (prompt, answer) training pairs per prompt, drawn with a NumPy generator."""
        ps, cs = [], []
        for p, row in zip(self.prompts, self.probs):
            for j in rng.choice(len(self.answers), size=n_per_prompt, p=list(row)):
                ps.append(p)
                cs.append(self.answers[j])
        return ps, cs


def train_answer_model(task: AnswerTask | None = None, *, steps: int = 200, n_per_prompt: int = 200,
                       lr: float = 3e-3, seed: int = 0, arch: str = "gpt2"):
    """Train a tiny model by MLE on samples of ``task`` (a few seconds on a CPU).

    Returns ``(model, tokenizer, task)``. The model only approximates ``task.probs``; use
    :func:`answer_distribution` for its exact distribution over the answers.
    """
    import numpy as np

    from sharpsim.bridge._algorithms import fine_tune

    task = task or AnswerTask()
    tok = char_tokenizer("".join(sorted(set("".join(task.prompts + task.answers)))))
    if arch == "gpt2":
        model = tiny_gpt2(tok, n_embd=48, seed=seed)
    else:
        model = tiny_llama(tok, hidden_size=48, seed=seed)
    ps, cs = task.sample(np.random.default_rng(seed), n_per_prompt)
    fine_tune(model, tok, ps, cs, steps=steps, batch_size=64, learning_rate=lr, seed=seed, add_eos=True)
    model.eval()
    return model, tok, task


def answer_distribution(model, tokenizer, prompts: Sequence[str], answers: Sequence[str]):
    """Exact π(answer + EOS | prompt) for every (prompt, answer): a ``[len(prompts), len(answers)]`` tensor.

    ``1 - row.sum()`` is the mass the model puts on all other strings.
    """
    from sharpsim.bridge._scoring import score_completions

    flat_p = [p for p in prompts for _ in answers]
    flat_c = [a for _ in prompts for a in answers]
    s = score_completions(model, tokenizer, flat_p, flat_c, add_eos=True)
    return s.logps.exp().view(len(prompts), len(answers))
