"""Sharpening real causal LMs: SFT-sharpening (§6), RLHF-sharpening with the Eq. 8 squared loss or the logistic
DPO loss (§9), and reward-based XPO (Algorithm 1, §10). The bridge owns its losses (TRL has no BoN/XPO).

Conventions shared with the simulated algorithms: ``N`` (responses per prompt), ``beta`` the KL coefficient,
``alpha`` XPO's optimism coefficient, ``num_iterations`` T, reward names ``"logprob"`` / ``"lennorm"`` /
``"majority"`` (a fraction). Every result is shaped like the simulator's ``SharpeningResult``: ``policy`` (the
trained model), ``params`` (its trainable tensors), ``num_queries`` (sample-and-evaluate queries to π_base,
COUNTED from the completions actually drawn and scored, not from a formula) and ``diagnostics`` (the metrics,
the loss history, the convergence record); ``metrics`` also holds ``queries`` (= ``num_queries``), the
self-reward ``self_reward`` (mean log π_base(y|x)) and ``pass_at_n`` / ``accuracy`` when a checker is given.

Convergence: with ``stop_tol`` set, training stops when the mean loss over the last ``stop_window`` steps is at
most ``stop_loss`` or improved by less than ``stop_tol`` (relative) on the previous window, or at ``steps`` (a
cap); the result
records ``converged``, ``steps_run`` and ``final_loss`` (the mean loss over the last window).

Training works on the sampled *token ids* (never re-tokenised text) and uses float32 teacher forcing.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Callable, Hashable, Sequence

from sharpsim._validation import check_count, check_float, check_optional_count, check_prompts
from sharpsim.bridge._deps import require_peft, require_torch
from sharpsim.bridge._interop import dpo_pairs, export_completions, sft_rows
from sharpsim.bridge._rewards import compute_self_reward, select_best
from sharpsim.bridge._runtime import bridge_threads
from sharpsim.bridge._sampling import Samples, check_num_samples, sample_completions
from sharpsim.bridge._scoring import (
    completion_token_logps,
    model_device,
    pad_left,
    pad_right,
    resolve_special_ids,
    score_ids,
    stochastic_forward,
    tokenize_prompts,
)

torch = require_torch()
F = torch.nn.functional

__all__ = [
    "RLHFConfig",
    "SFTConfig",
    "SharpeningResult",
    "XPOConfig",
    "apply_lora",
    "dpo_logistic_loss",
    "evaluate_policy",
    "fine_tune",
    "rlhf_sharpening",
    "sequence_logps",
    "sft_nll_loss",
    "sft_sharpening",
    "sharpening_squared_loss",
    "xpo_loss",
    "xpo_sharpening",
]


# --- losses (pure functions of summed sequence log-probs) -------------------------------------------------


def sft_nll_loss(policy_logps):
    """Negative log-likelihood of the kept responses, averaged over sequences (the MLE step of §6)."""
    return -policy_logps.mean()


def sharpening_squared_loss(policy_logps_y, policy_logps_y2, ref_logps_y, ref_logps_y2, beta: float,
                            rewards_y=None, rewards_y2=None):
    """Eq. 8 (Eq. 4 with a general reward): mean over pairs of

    ``( β log π(y)/π_base(y) − β log π(y')/π_base(y') − (r(y) − r(y')) )²``

    with r = log π_base by default, i.e. the reference log-probs double as the self-reward. Zero at the
    KL-regularised optimum π*_β ∝ π_base^{1+1/β}.
    """
    check_float("beta", beta, low=0.0)
    if (rewards_y is None) != (rewards_y2 is None):
        raise ValueError("give both rewards_y and rewards_y2, or neither")
    if rewards_y is None:
        rewards_y, rewards_y2 = ref_logps_y, ref_logps_y2
    pred = beta * ((policy_logps_y - ref_logps_y) - (policy_logps_y2 - ref_logps_y2))
    return ((pred - (rewards_y - rewards_y2)) ** 2).mean()


def dpo_logistic_loss(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta: float):
    """Logistic DPO loss: ``−log σ(β[(log π(y⁺) − log π_base(y⁺)) − (log π(y⁻) − log π_base(y⁻))])``, mean."""
    check_float("beta", beta, low=0.0)
    return -F.logsigmoid(beta * ((policy_chosen - ref_chosen) - (policy_rejected - ref_rejected))).mean()


def xpo_loss(policy_logps_y, policy_logps_base, ref_logps_y, ref_logps_base, beta: float, alpha: float,
             rewards_y=None, rewards_base=None):
    """Algorithm 1's objective (with the sign fixed as in the proof, theory.md §10), averaged over D:

    ``α · log π(ỹ|x) + ( β log π(y)/π_base(y) − β log π(ỹ)/π_base(ỹ) − (r(y) − r(ỹ)) )²``

    where y ~ π^(t) and ỹ ~ π_base. The optimism term lowers the mass on what the base already produces.
    """
    check_float("alpha", alpha, low=0.0, low_open=False)
    sq = sharpening_squared_loss(policy_logps_y, policy_logps_base, ref_logps_y, ref_logps_base, beta,
                                 rewards_y, rewards_base)
    return alpha * policy_logps_base.mean() + sq


# --- batching rows of token ids -------------------------------------------------------------------------


def _rows_from_samples(samples: Samples) -> tuple[list[list[int]], list[list[int]]]:
    """Unpadded (prompt ids, completion ids) for each completion row of ``samples``."""
    p_ids, p_mask = samples.prompt_ids.cpu(), samples.prompt_mask.cpu()
    c_ids, c_mask = samples.completion_ids.cpu(), samples.completion_mask.cpu()
    prompts = [p_ids[i][p_mask[i]].tolist() for i in range(p_ids.shape[0])]
    rows_p = [prompts[i // samples.N] for i in range(c_ids.shape[0])]
    rows_c = [c_ids[i][c_mask[i]].tolist() for i in range(c_ids.shape[0])]
    return rows_p, rows_c


def sequence_logps(model, prompts: Sequence[Sequence[int]], completions: Sequence[Sequence[int]], pad_id: int):
    """Summed log π(c|p) for lists of token ids, **with gradients** (training-time counterpart of scoring).

    Identical (prompt, completion) rows are run through the model once and their log-prob is shared (indexing
    keeps the gradient of every copy), unless dropout is active (then each row gets its own mask): a batch drawn
    from a small answer set has few distinct rows.
    """
    ids = lambda s: tuple(s.tolist() if hasattr(s, "tolist") else s)  # noqa: E731  (tensors hash by identity)
    keys = [(ids(p), ids(c)) for p, c in zip(prompts, completions)]
    index: dict = {}
    inverse = [index.setdefault(k, len(index)) for k in keys]
    if len(index) < len(keys) and not stochastic_forward(model):
        lp = _sequence_logps([k[0] for k in index], [k[1] for k in index], model, pad_id)
        return lp[torch.tensor(inverse, device=lp.device)]
    return _sequence_logps(prompts, completions, model, pad_id)


def _sequence_logps(prompts, completions, model, pad_id: int):
    dev = model_device(model)
    p, pm = pad_left(prompts, pad_id, dev)
    c, cm = pad_right(completions, pad_id, dev)
    return completion_token_logps(model, p, pm, c, cm).sum(-1)


def _lr_lambda(schedule: str, total: int):
    if schedule == "constant":
        return lambda step: 1.0
    if schedule == "linear":
        return lambda step: max(0.0, 1.0 - step / max(total, 1))
    raise ValueError(f"lr_schedule must be 'linear' or 'constant', got {schedule!r}")


def _optimizer(model, learning_rate, weight_decay):
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("the model has no trainable parameters")
    # foreach: one multi-tensor update per step instead of a Python loop over tensors (a third of a tiny model's
    # step on the CPU, where torch's default is the per-tensor loop); same update rule
    return torch.optim.AdamW(params, lr=learning_rate, weight_decay=weight_decay, foreach=True)


def _train_loop(model, num_rows: int, loss_fn: Callable, *, steps: int, batch_size: int, learning_rate: float,
                weight_decay: float, max_grad_norm: float | None, lr_schedule: str, seed: int,
                log_every: int = 0, stop_tol: float | None = None, stop_window: int = 25,
                stop_loss: float = 0.0) -> list[dict]:
    """Shared AdamW loop: ``loss_fn(row_indices) -> scalar loss``; epochs of shuffled mini-batches (run under the
    bridge's ``"training"`` thread count, see ``_runtime``). ``stop_tol``: stop early once converged (see
    :func:`converged`)."""
    with bridge_threads(model, "training"):
        return _train_loop_body(model, num_rows, loss_fn, steps=steps, batch_size=batch_size,
                                learning_rate=learning_rate, weight_decay=weight_decay, max_grad_norm=max_grad_norm,
                                lr_schedule=lr_schedule, seed=seed, log_every=log_every, stop_tol=stop_tol,
                                stop_window=stop_window, stop_loss=stop_loss)


def converged(losses: Sequence[float], tol: float, window: int, floor: float = 0.0) -> bool:
    """The stopping rule: at least ``window`` losses whose mean is ≤ ``floor`` (the loss is as small as asked),
    or at least two windows and the mean of the last window is lower than the mean of the window before by less
    than ``tol`` relative to it (``(prev − last) < tol·max(|prev|, 1e-8)``; a rising loss also stops). Pure
    function of the loss history."""
    if tol is None or len(losses) < window:
        return False
    last = sum(losses[-window:]) / window
    if last <= floor:
        return True
    if len(losses) < 2 * window:
        return False
    prev = sum(losses[-2 * window:-window]) / window
    return (prev - last) < tol * max(abs(prev), 1e-8)


def convergence_record(history: Sequence[dict], cap: int, tol: float | None, window: int,
                       floor: float = 0.0) -> dict:
    """``steps_run``, ``final_loss`` (mean of the last ``window`` losses), ``first_loss``, ``converged`` (the rule
    of :func:`converged` held at the last step; ``False`` when training hit the cap ``cap`` first)."""
    losses = [h["loss"] for h in history]
    w = max(1, min(window, len(losses)))
    return {"steps_run": len(losses), "step_cap": int(cap), "stop_tol": tol, "stop_window": window,
            "stop_loss": floor,
            "first_loss": losses[0] if losses else float("nan"),
            "final_loss": sum(losses[-w:]) / w if losses else float("nan"),
            "converged": bool(tol is not None and converged(losses, tol, window, floor))}


def _train_loop_body(model, num_rows: int, loss_fn: Callable, *, steps: int, batch_size: int, learning_rate: float,
                     weight_decay: float, max_grad_norm: float | None, lr_schedule: str, seed: int,
                     log_every: int = 0, stop_tol: float | None = None, stop_window: int = 25,
                stop_loss: float = 0.0) -> list[dict]:
    opt = _optimizer(model, learning_rate, weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(lr_schedule, steps))
    gen = torch.Generator().manual_seed(seed)
    history, order, pos = [], torch.randperm(num_rows, generator=gen), 0
    model.train()
    for step in range(steps):
        if pos >= num_rows:
            order, pos = torch.randperm(num_rows, generator=gen), 0
        idx = order[pos: pos + batch_size]
        pos += batch_size
        loss = loss_fn(idx.tolist())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if max_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], max_grad_norm)
        opt.step()
        sched.step()
        history.append({"step": step, "loss": float(loss.detach())})
        if log_every and (step % log_every == 0 or step == steps - 1):
            print(f"  step {step:4d}  loss {history[-1]['loss']:.4f}", flush=True)
        if stop_tol is not None and converged([h["loss"] for h in history], stop_tol, stop_window, stop_loss):
            break
    model.eval()
    return history


def _num_steps(steps: int | None, epochs: int | None, num_rows: int, batch_size: int) -> int:
    """``steps`` if given, else ``epochs`` (default 1) passes over ``num_rows`` rows in mini-batches."""
    check_optional_count("steps", steps)
    check_optional_count("epochs", epochs)
    check_count("batch_size", batch_size)
    if steps is not None:
        return int(steps)
    return (1 if epochs is None else int(epochs)) * math.ceil(num_rows / batch_size)


def _check_training_args(*, batch_size, learning_rate, weight_decay, max_grad_norm, lr_schedule, seed, log_every,
                         steps=None, epochs=None) -> None:
    """The optimiser's arguments, checked before any sampling (a NaN or negative learning rate used to fail
    inside torch only after all the sampling was done)."""
    check_optional_count("steps", steps)
    check_optional_count("epochs", epochs)
    check_count("batch_size", batch_size)
    check_float("learning_rate", learning_rate, low=0.0, hint="e.g. learning_rate=1e-4")
    check_float("weight_decay", weight_decay, low=0.0, low_open=False)
    if max_grad_norm is not None:
        check_float("max_grad_norm", max_grad_norm, low=0.0, hint="pass max_grad_norm=None to disable clipping")
    _lr_lambda(lr_schedule, 1)
    check_count("seed", seed, minimum=0)
    check_count("log_every", log_every, minimum=0)


def fine_tune(model, tokenizer, prompts, completions, *, steps: int | None = None, epochs: int | None = None,
              batch_size: int = 8, learning_rate: float = 1e-4, weight_decay: float = 0.0,
              max_grad_norm: float | None = 1.0, lr_schedule: str = "linear", seed: int = 0,
              add_eos: bool = False, log_every: int = 0, stop_tol: float | None = None,
              stop_window: int = 25, stop_loss: float = 0.0) -> list[dict]:
    """MLE fine-tuning on (prompt, completion) pairs, given as texts or as lists of token ids.

    Maximises Σ log π(c|p) (sequence-level NLL averaged over the mini-batch) with AdamW; returns the loss
    history. Works on a peft model too (only its trainable adapters are updated). ``steps`` wins over ``epochs``;
    with neither, one epoch.
    """
    _check_training_args(batch_size=batch_size, learning_rate=learning_rate, weight_decay=weight_decay,
                         max_grad_norm=max_grad_norm, lr_schedule=lr_schedule, seed=seed, log_every=log_every,
                         steps=steps, epochs=epochs)
    if isinstance(prompts, str) or isinstance(completions, str):
        raise TypeError("prompts and completions must be sequences (of strings or of token-id lists), not a string")
    if len(prompts) == 0:
        raise ValueError("prompts is empty: fine_tune needs at least one (prompt, completion) pair")
    pad_id, eos_ids = resolve_special_ids(tokenizer, model)
    if prompts and isinstance(prompts[0], str):
        prompts = tokenize_prompts(tokenizer, prompts)
    if completions and isinstance(completions[0], str):
        completions = [list(tokenizer(c, add_special_tokens=False)["input_ids"]) for c in completions]
    if add_eos:
        completions = [list(c) + [eos_ids[0]] for c in completions]
    if len(prompts) != len(completions):
        raise ValueError(f"{len(prompts)} prompts but {len(completions)} completions")
    total = _num_steps(steps, epochs, len(prompts), batch_size)

    def loss_fn(idx):
        lp = sequence_logps(model, [prompts[i] for i in idx], [completions[i] for i in idx], pad_id)
        return sft_nll_loss(lp)

    return _train_loop(model, len(prompts), loss_fn, steps=total, batch_size=batch_size,
                       learning_rate=learning_rate, weight_decay=weight_decay, max_grad_norm=max_grad_norm,
                       lr_schedule=lr_schedule, seed=seed, log_every=log_every, stop_tol=stop_tol,
                       stop_window=stop_window, stop_loss=stop_loss)


def apply_lora(model, *, r: int = 8, lora_alpha: int = 16, lora_dropout: float = 0.0,
               target_modules="all-linear"):
    """Wrap ``model`` with LoRA adapters (needs ``pip install 'sharpsim[lora]'``)."""
    peft = require_peft()
    cfg = peft.LoraConfig(r=r, lora_alpha=lora_alpha, lora_dropout=lora_dropout, target_modules=target_modules,
                          task_type="CAUSAL_LM")
    return peft.get_peft_model(model, cfg)


def _maybe_lora(model, lora):
    if lora is None or lora is False:
        return model
    if lora is True:
        return apply_lora(model)
    if isinstance(lora, dict):
        return apply_lora(model, **lora)
    peft = require_peft()
    return peft.get_peft_model(model, lora)


# --- evaluation -----------------------------------------------------------------------------------------


def evaluate_policy(model, tokenizer, prompts: Sequence[str], *, reference=None, N: int = 4,
                    answers: Sequence | None = None, check: Callable[[str, object], bool] | None = None,
                    max_new_tokens: int = 64, temperature: float = 1.0, seed: int = 0,
                    max_batch_rows: int = 64) -> dict:
    """Metrics of a (sharpened) policy, with the self-reward measured under ``reference`` (π_base).

    ``self_reward``: mean log π_base(y|x) of samples y ~ π̂ at ``temperature``; ``greedy_self_reward``: the same
    for π̂'s greedy completion. With ``answers`` and ``check(text, answer) -> bool``: ``accuracy`` (sampled),
    ``greedy_accuracy`` and ``pass_at_n`` (share of prompts with a correct answer among the N samples).
    """
    check_num_samples(N)
    prompts = check_prompts(prompts)
    ref = reference if reference is not None else model
    s = sample_completions(model, tokenizer, prompts, N, max_new_tokens=max_new_tokens,
                           temperature=temperature, seed=seed, max_batch_rows=max_batch_rows)
    sc = score_ids(ref, s.prompt_ids, s.prompt_mask, s.completion_ids, s.completion_mask)
    g = sample_completions(model, tokenizer, prompts, 1, max_new_tokens=max_new_tokens, do_sample=False,
                           max_batch_rows=max_batch_rows)
    gsc = score_ids(ref, g.prompt_ids, g.prompt_mask, g.completion_ids, g.completion_mask)
    out = {
        "self_reward": float(sc.logps.mean()),
        "self_reward_mean_token": float((sc.logps / sc.lengths.clamp(min=1)).mean()),
        "greedy_self_reward": float(gsc.logps.mean()),
        "mean_length": float(sc.lengths.float().mean()),
        "truncated_rate": float(s.truncated.float().mean()),
    }
    if answers is not None and check is not None:
        texts = s.texts(tokenizer)
        ok = torch.tensor([check(t, answers[i // N]) for i, t in enumerate(texts)], dtype=torch.float32)
        g_ok = torch.tensor([check(t, a) for t, a in zip(g.texts(tokenizer), answers)], dtype=torch.float32)
        out.update(accuracy=float(ok.mean()), greedy_accuracy=float(g_ok.mean()),
                   pass_at_n=float(ok.view(len(prompts), N).amax(1).mean()))
    return out


# --- configs and results --------------------------------------------------------------------------------


@dataclasses.dataclass
class _TrainConfig:
    max_new_tokens: int = 64
    temperature: float = 1.0
    epochs: int | None = 3
    steps: int | None = None
    batch_size: int = 8
    learning_rate: float = 1e-4
    weight_decay: float = 0.0
    max_grad_norm: float | None = 1.0
    lr_schedule: str = "linear"
    seed: int = 0
    max_batch_rows: int = 64
    log_every: int = 0
    stop_tol: float | None = None
    stop_window: int = 25
    stop_loss: float = 0.0

    def __post_init__(self):
        self.validate()

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first bad field (called on construction and again by the algorithm,
        before any sampling, so a field changed after construction is caught too)."""
        check_count("max_new_tokens", self.max_new_tokens)
        check_float("temperature", self.temperature, low=0.0,
                    hint="temperature=0 is greedy decoding, which the sharpening algorithms do not use (they need "
                         "samples from π_base); use temperature=1.0 for π_base itself")
        check_optional_count("epochs", self.epochs,
                             hint="pass epochs >= 1, or epochs=None with steps=... to set the step count directly")
        check_optional_count("steps", self.steps, hint="pass steps >= 1, or steps=None to train for `epochs`")
        if self.steps is None and self.epochs is None:
            raise ValueError("give epochs or steps (both are None): e.g. epochs=3")
        check_count("batch_size", self.batch_size)
        check_float("learning_rate", self.learning_rate, low=0.0, hint="e.g. learning_rate=1e-4")
        check_float("weight_decay", self.weight_decay, low=0.0, low_open=False)
        if self.max_grad_norm is not None:
            check_float("max_grad_norm", self.max_grad_norm, low=0.0,
                        hint="pass max_grad_norm=None to disable clipping")
        if self.lr_schedule not in ("linear", "constant"):
            raise ValueError(f"lr_schedule must be 'linear' or 'constant', got {self.lr_schedule!r}")
        check_count("seed", self.seed, minimum=0)
        check_count("max_batch_rows", self.max_batch_rows)
        check_count("log_every", self.log_every, minimum=0, hint="0 disables logging")
        if self.stop_tol is not None:
            check_float("stop_tol", self.stop_tol, low=0.0, hint="e.g. stop_tol=0.01, or None to run all steps")
        check_count("stop_window", self.stop_window)
        check_float("stop_loss", self.stop_loss, low=0.0, low_open=False, hint="an absolute loss floor, e.g. 1e-4")


def _check_reward(reward) -> None:
    from sharpsim.bridge._rewards import REWARD_ALIASES, REWARDS

    if not callable(reward) and reward not in REWARDS and reward not in REWARD_ALIASES:
        raise ValueError(f"reward must be one of {REWARDS} or a callable, got {reward!r}")


@dataclasses.dataclass
class SFTConfig(_TrainConfig):
    """SFT-sharpening: N samples per prompt, keep the best by ``reward``, fine-tune by MLE (§6)."""

    N: int = 8
    reward: str | Callable = "logprob"

    def validate(self) -> None:
        super().validate()
        check_num_samples(self.N, "N")
        _check_reward(self.reward)


@dataclasses.dataclass
class RLHFConfig(_TrainConfig):
    """RLHF-sharpening on pairs y, y' ~ π_base (N = 2): ``loss="squared"`` (Eq. 8) or ``"logistic"`` (DPO)."""

    beta: float = 0.1
    loss: str = "squared"
    reward: str | Callable = "logprob"

    def validate(self) -> None:
        super().validate()
        check_float("beta", self.beta, low=0.0, hint="β is the KL coefficient of Eq. 8, e.g. beta=0.1")
        if self.loss not in ("squared", "logistic"):
            raise ValueError(f"loss must be 'squared' or 'logistic', got {self.loss!r}")
        _check_reward(self.reward)


@dataclasses.dataclass
class XPOConfig(_TrainConfig):
    """Algorithm 1 (XPO): T iterations, each adds ``prompts_per_iteration`` triples (x, y ~ π^(t), ỹ ~ π_base)
    to D and takes ``steps_per_iteration`` gradient steps on α·log π(ỹ) + squared loss over the whole D."""

    beta: float = 0.1
    alpha: float = 0.01
    reward: str | Callable = "logprob"
    num_iterations: int = 8
    prompts_per_iteration: int = 4
    steps_per_iteration: int = 4
    select: str = "j_beta"
    selection_samples: int = 1

    def validate(self) -> None:
        super().validate()
        check_float("beta", self.beta, low=0.0, hint="β is the KL coefficient of Algorithm 1, e.g. beta=0.1")
        check_float("alpha", self.alpha, low=0.0, low_open=False,
                    hint="α is XPO's optimism coefficient (alpha=0 turns the optimism off)")
        check_count("num_iterations", self.num_iterations)
        check_count("prompts_per_iteration", self.prompts_per_iteration)
        check_count("steps_per_iteration", self.steps_per_iteration)
        if self.select not in ("j_beta", "last"):
            raise ValueError(f"select must be 'j_beta' (Algorithm 1's argmax of estimated J_β) or 'last', "
                             f"got {self.select!r}")
        check_count("selection_samples", self.selection_samples)
        _check_reward(self.reward)


@dataclasses.dataclass
class SharpeningResult:
    """Shaped like the simulator's :class:`sharpsim.algorithms.SharpeningResult`: ``policy`` (the trained model,
    trained in place; a peft wrapper if LoRA was used), ``params`` (its trainable tensors by name),
    ``num_queries`` (sample-and-evaluate queries to π_base, counted from what was drawn and scored) and
    ``diagnostics`` (``metrics``, ``history``, ``convergence``). The bridge's own fields stay: ``metrics``
    (``queries`` = ``num_queries``, ``self_reward`` …), the loss ``history``, the exportable ``data`` (SFT rows or
    DPO pairs); ``model`` is ``policy``."""

    model: object
    metrics: dict
    history: list[dict]
    data: dict
    convergence: dict = dataclasses.field(default_factory=dict)

    @property
    def policy(self):
        return self.model

    @property
    def params(self) -> dict:
        return {k: v for k, v in self.model.named_parameters() if v.requires_grad}

    @property
    def num_queries(self) -> int:
        return int(self.metrics["queries"])

    @property
    def diagnostics(self) -> dict:
        return {"metrics": self.metrics, "history": self.history, "convergence": self.convergence}


def _config(config, cls):
    """``config`` (default ``cls()``), type-checked and re-validated (fields may have changed since construction)."""
    cfg = cls() if config is None else config
    if not isinstance(cfg, cls):
        raise TypeError(f"config must be a {cls.__name__}, got {type(cfg).__name__}")
    cfg.validate()
    return cfg


def _truth_metrics(texts, N, answers, check, picks=None) -> dict:
    if answers is None or check is None:
        return {}
    ok = torch.tensor([check(t, answers[i // N]) for i, t in enumerate(texts)],
                      dtype=torch.float32).view(-1, N)
    out = {"base_accuracy": float(ok.mean()), "pass_at_n": float(ok.amax(1).mean())}
    if picks is not None:
        out["bon_accuracy"] = float(ok.gather(1, picks[:, None]).mean())
    return out


# --- SFT-sharpening ------------------------------------------------------------------------------------


def sft_sharpening(model, tokenizer, prompts: Sequence[str], config: SFTConfig | None = None, *,
                   extract_answer: Callable[[str], Hashable | None] | None = None,
                   answers: Sequence | None = None, check: Callable[[str, object], bool] | None = None,
                   lora=None) -> SharpeningResult:
    """SFT-sharpening (§6): for each prompt draw N responses from π_base = ``model``, keep
    argmax_j r_self(y_j|x), and fine-tune ``model`` by MLE on the kept (prompt, response) token ids.

    ``lora``: ``None`` (full fine-tune), ``True`` / a dict of :func:`apply_lora` kwargs / a ``peft.LoraConfig``.
    Metrics: ``queries`` (n·N), ``self_reward`` (mean log π_base of the base samples), ``selected_self_reward``
    (of the kept ones), plus ``pass_at_n`` / ``base_accuracy`` / ``bon_accuracy`` with ``answers`` and ``check``.
    """
    cfg = _config(config, SFTConfig)
    prompts = check_prompts(prompts)
    resolve_special_ids(tokenizer, model)
    samples = sample_completions(model, tokenizer, prompts, cfg.N, max_new_tokens=cfg.max_new_tokens,
                                 temperature=cfg.temperature, seed=cfg.seed, max_batch_rows=cfg.max_batch_rows)
    scores = score_ids(model, samples.prompt_ids, samples.prompt_mask, samples.completion_ids,
                       samples.completion_mask, truncated=samples.truncated)
    texts = samples.texts(tokenizer)
    rewards = compute_self_reward(cfg.reward, scores, N=cfg.N, texts=texts,
                                  prompts=list(prompts), extract_answer=extract_answer)
    picks, _ = select_best(rewards.view(len(prompts), cfg.N))
    flat = (torch.arange(len(prompts)) * cfg.N + picks).tolist()
    rows_p, rows_c = _rows_from_samples(samples)
    kept_p, kept_c = [rows_p[i] for i in flat], [rows_c[i] for i in flat]
    metrics = {
        "algorithm": "sft_sharpening", "num_prompts": len(prompts), "N": cfg.N,
        "queries": int(samples.completion_ids.shape[0]),  # counted: rows drawn from and scored under π_base
        "self_reward": float(scores.logps.mean()),
        "selected_self_reward": float(scores.logps[flat].mean()),
        "selected_mean_length": float(scores.lengths[flat].float().mean()),
        "truncated_rate": float(samples.truncated.float().mean()),
    }
    metrics.update(_truth_metrics(texts, cfg.N, answers, check, picks))
    kept_prompts = [prompts[i // cfg.N] for i in flat]
    exported = export_completions(model, tokenizer, kept_prompts, kept_p, kept_c,  # under π_base: before training
                                  [float(scores.logps[i]) for i in flat])
    model = _maybe_lora(model, lora)
    history = fine_tune(model, tokenizer, kept_p, kept_c, steps=cfg.steps, epochs=cfg.epochs,
                        batch_size=cfg.batch_size, learning_rate=cfg.learning_rate, weight_decay=cfg.weight_decay,
                        max_grad_norm=cfg.max_grad_norm, lr_schedule=cfg.lr_schedule, seed=cfg.seed,
                        log_every=cfg.log_every, stop_tol=cfg.stop_tol, stop_window=cfg.stop_window,
                        stop_loss=cfg.stop_loss)
    conv = convergence_record(history, _num_steps(cfg.steps, cfg.epochs, len(kept_p), cfg.batch_size), cfg.stop_tol,
                              cfg.stop_window, cfg.stop_loss)
    metrics.update(final_loss=conv["final_loss"], steps_run=conv["steps_run"], converged=conv["converged"])
    data = sft_rows(kept_prompts, exported["text"], exported["base_logps"], truncated=exported["truncated"],
                    exact=exported["exact"])
    return SharpeningResult(model, metrics, history, data, conv)


# --- RLHF-sharpening (DPO / REBEL) ---------------------------------------------------------------------


def _pair_loss(model, pad_id, loss: str, beta: float, alpha: float | None):
    def fn(p, y, y2, ref_y, ref_y2, r_y, r_y2):
        lp = sequence_logps(model, p + p, y + y2, pad_id)
        lp_y, lp_y2 = lp[: len(p)], lp[len(p):]
        if loss == "squared":
            return sharpening_squared_loss(lp_y, lp_y2, ref_y, ref_y2, beta, r_y, r_y2)
        if loss == "logistic":
            chosen = r_y >= r_y2  # higher self-reward is "chosen"
            return dpo_logistic_loss(torch.where(chosen, lp_y, lp_y2), torch.where(chosen, lp_y2, lp_y),
                                     torch.where(chosen, ref_y, ref_y2), torch.where(chosen, ref_y2, ref_y), beta)
        if loss == "xpo":
            return xpo_loss(lp_y, lp_y2, ref_y, ref_y2, beta, alpha, r_y, r_y2)
        raise ValueError(f"loss must be 'squared' or 'logistic', got {loss!r}")
    return fn


def rlhf_sharpening(model, tokenizer, prompts: Sequence[str], config: RLHFConfig | None = None, *,
                    extract_answer=None, answers=None, check=None, lora=None) -> SharpeningResult:
    """RLHF-sharpening (§9): one pair y, y' ~ π_base per prompt (N = 2, m = 2n), then minimise Eq. 8
    (``loss="squared"``) or the logistic DPO loss against the frozen π_base. The base log-probs are computed
    once before training and double as the reference log-probs (and as the self-reward for ``"logprob"``).
    """
    cfg = _config(config, RLHFConfig)
    prompts = check_prompts(prompts)
    pad_id, _ = resolve_special_ids(tokenizer, model)
    samples = sample_completions(model, tokenizer, prompts, 2, max_new_tokens=cfg.max_new_tokens,
                                 temperature=cfg.temperature, seed=cfg.seed, max_batch_rows=cfg.max_batch_rows)
    scores = score_ids(model, samples.prompt_ids, samples.prompt_mask, samples.completion_ids,
                       samples.completion_mask, truncated=samples.truncated)
    texts = samples.texts(tokenizer)
    rewards = compute_self_reward(cfg.reward, scores, N=2, texts=texts, prompts=list(prompts),
                                  extract_answer=extract_answer).view(-1, 2)
    ref = scores.logps.view(-1, 2)
    rows_p, rows_c = _rows_from_samples(samples)
    P = [rows_p[2 * i] for i in range(len(prompts))]
    Y, Y2 = [rows_c[2 * i] for i in range(len(prompts))], [rows_c[2 * i + 1] for i in range(len(prompts))]
    exported = export_completions(model, tokenizer, [prompts[i // 2] for i in range(len(rows_c))], rows_p, rows_c,
                                  scores.logps.tolist())  # under π_base: before training
    dev = model_device(model)
    ref, rewards = ref.to(dev), rewards.to(dev)
    model = _maybe_lora(model, lora)
    fn = _pair_loss(model, pad_id, cfg.loss, cfg.beta, None)

    def loss_fn(idx):
        return fn([P[i] for i in idx], [Y[i] for i in idx], [Y2[i] for i in idx], ref[idx, 0], ref[idx, 1],
                  rewards[idx, 0], rewards[idx, 1])

    steps = _num_steps(cfg.steps, cfg.epochs, len(P), cfg.batch_size)
    history = _train_loop(model, len(P), loss_fn, steps=steps, batch_size=cfg.batch_size,
                          learning_rate=cfg.learning_rate, weight_decay=cfg.weight_decay,
                          max_grad_norm=cfg.max_grad_norm, lr_schedule=cfg.lr_schedule, seed=cfg.seed,
                          log_every=cfg.log_every, stop_tol=cfg.stop_tol, stop_window=cfg.stop_window,
                          stop_loss=cfg.stop_loss)
    conv = convergence_record(history, steps, cfg.stop_tol, cfg.stop_window, cfg.stop_loss)
    metrics = {"algorithm": f"rlhf_sharpening_{cfg.loss}", "num_prompts": len(prompts), "N": 2,
               "queries": int(samples.completion_ids.shape[0]),  # counted: rows drawn and scored
               "beta": cfg.beta, "self_reward": float(scores.logps.mean()),
               "truncated_rate": float(samples.truncated.float().mean()),
               "final_loss": conv["final_loss"], "steps_run": conv["steps_run"], "converged": conv["converged"]}
    metrics.update(_truth_metrics(texts, 2, answers, check))
    ex = exported
    data = dpo_pairs(list(prompts), ex["text"][0::2], ex["text"][1::2], rewards[:, 0].tolist(),
                     rewards[:, 1].tolist(), ex["base_logps"][0::2], ex["base_logps"][1::2],
                     truncated_a=ex["truncated"][0::2], truncated_b=ex["truncated"][1::2],
                     exact_a=ex["exact"][0::2], exact_b=ex["exact"][1::2])
    return SharpeningResult(model, metrics, history, data, conv)


# --- XPO ------------------------------------------------------------------------------------------------


def xpo_sharpening(model, tokenizer, prompts: Sequence[str], config: XPOConfig | None = None, *,
                   reference=None, extract_answer=None, answers=None, check=None, lora=None) -> SharpeningResult:
    """Reward-based XPO (Algorithm 1) with r = log π_base (or ``config.reward``) and a growing dataset D.

    Iteration t draws ``prompts_per_iteration`` prompts (cycling through a seeded shuffle), y ~ π^(t) from the
    current ``model`` and ỹ ~ π_base from ``reference`` (default: a frozen deep copy of ``model`` taken before
    training), scores both under π_base, appends the triples to D, and takes ``steps_per_iteration`` AdamW steps
    on ``α·mean log π(ỹ) + mean squared loss`` over mini-batches of D.

    Returns, as Algorithm 1 does, the iterate with the largest estimated J_β (``config.select="j_beta"``, the
    default; ``"last"`` returns the last iterate): for every iterate π^(0) = π_base, π^(1), …, π^(T),
    ``Ĵ_β(π) = mean over y ~ π of r(y) − β (log π(y|x) − log π_base(y|x))`` on a fixed validation set (the
    first ``min(len(prompts), prompts_per_iteration)`` prompts of the shuffle, ``selection_samples`` draws each;
    the same r as training). ``metrics``: ``j_beta_estimates`` (per iterate), ``selected_iteration``.

    ``queries`` counts sample-and-evaluate calls to π_base, from what was drawn and scored: 2 per triple (ỹ
    sampled and scored, y scored) plus one per selection draw scored under π_base.

    ``data`` holds D: texts exactly as sampled (special tokens and the final EOS kept, so
    ``score_completions(reference, tok, prompts, texts)`` re-scores them to ``ref_*_logps``), and
    ``policy_truncated`` / ``base_truncated`` flags. It is not a TRL table (TRL has no XPO trainer).
    """
    cfg = _config(config, XPOConfig)
    prompts = check_prompts(prompts)
    pad_id, _ = resolve_special_ids(tokenizer, model)
    if reference is None:
        reference = copy.deepcopy(model)
    reference.eval()
    for p in reference.parameters():
        p.requires_grad_(False)
    model = _maybe_lora(model, lora)
    dev = model_device(model)
    gen = torch.Generator().manual_seed(cfg.seed)
    order = torch.randperm(len(prompts), generator=gen).tolist()
    D_p, D_y, D_b, D_ref_y, D_ref_b, D_r_y, D_r_b, texts_y, texts_b, D_x = ([] for _ in range(10))
    trunc_y, trunc_b = [], []
    history: list[dict] = []
    opt = _optimizer(model, cfg.learning_rate, cfg.weight_decay)
    fn = _pair_loss(model, pad_id, "xpo", cfg.beta, cfg.alpha)
    cursor = 0
    val_prompts = [prompts[i] for i in order[: min(len(prompts), cfg.prompts_per_iteration)]]
    selection_queries = 0

    def estimate_j(t):
        """Ĵ_β of the current iterate on the validation prompts (fixed seed per iterate)."""
        nonlocal selection_queries
        v = sample_completions(model, tokenizer, val_prompts, cfg.selection_samples,
                               max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature,
                               seed=cfg.seed + 1_000_003 + t, max_batch_rows=cfg.max_batch_rows)
        sv_ref = score_ids(reference, v.prompt_ids, v.prompt_mask, v.completion_ids, v.completion_mask)
        sv_pol = score_ids(model, v.prompt_ids, v.prompt_mask, v.completion_ids, v.completion_mask)
        selection_queries += int(v.completion_ids.shape[0])
        rv = compute_self_reward(cfg.reward, sv_ref, N=cfg.selection_samples, texts=v.texts(tokenizer),
                                 prompts=val_prompts, extract_answer=extract_answer)
        return float((rv - cfg.beta * (sv_pol.logps.float() - sv_ref.logps.float())).mean())

    def trainable_state():
        return {k: p.detach().clone() for k, p in model.named_parameters() if p.requires_grad}

    j_hat = [estimate_j(0)] if cfg.select == "j_beta" else []
    best_state, best_t = (trainable_state(), 0) if cfg.select == "j_beta" else (None, None)
    for t in range(cfg.num_iterations):
        batch = []
        for _ in range(cfg.prompts_per_iteration):
            batch.append(prompts[order[cursor % len(order)]])
            cursor += 1
        y = sample_completions(model, tokenizer, batch, 1, max_new_tokens=cfg.max_new_tokens,
                               temperature=cfg.temperature, seed=cfg.seed + 2 * t,
                               max_batch_rows=cfg.max_batch_rows)
        b = sample_completions(reference, tokenizer, batch, 1, max_new_tokens=cfg.max_new_tokens,
                               temperature=cfg.temperature, seed=cfg.seed + 2 * t + 1,
                               max_batch_rows=cfg.max_batch_rows)
        sy = score_ids(reference, y.prompt_ids, y.prompt_mask, y.completion_ids, y.completion_mask)
        sb = score_ids(reference, b.prompt_ids, b.prompt_mask, b.completion_ids, b.completion_mask)
        ty, tb = y.texts(tokenizer), b.texts(tokenizer)
        ry = compute_self_reward(cfg.reward, sy, N=1, texts=ty, prompts=batch,
                                 extract_answer=extract_answer)
        rb = compute_self_reward(cfg.reward, sb, N=1, texts=tb, prompts=batch,
                                 extract_answer=extract_answer)
        rp, rc = _rows_from_samples(y)
        _, rcb = _rows_from_samples(b)
        D_p += rp; D_y += rc; D_b += rcb; D_x += batch
        # exported texts keep special tokens (they re-tokenise to the scored ids); rewards used the clean texts
        texts_y += y.texts(tokenizer, skip_special_tokens=False)
        texts_b += b.texts(tokenizer, skip_special_tokens=False)
        trunc_y += y.truncated.tolist(); trunc_b += b.truncated.tolist()
        D_ref_y += sy.logps.tolist(); D_ref_b += sb.logps.tolist(); D_r_y += ry.tolist(); D_r_b += rb.tolist()
        ref_y, ref_b = torch.tensor(D_ref_y, device=dev), torch.tensor(D_ref_b, device=dev)
        r_y, r_b = torch.tensor(D_r_y, device=dev), torch.tensor(D_r_b, device=dev)
        model.train()
        with bridge_threads(model, "training"):
            for s in range(cfg.steps_per_iteration):
                idx = torch.randperm(len(D_p), generator=gen)[: cfg.batch_size].tolist()
                loss = fn([D_p[i] for i in idx], [D_y[i] for i in idx], [D_b[i] for i in idx], ref_y[idx],
                          ref_b[idx], r_y[idx], r_b[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                if cfg.max_grad_norm is not None:
                    torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad],
                                                   cfg.max_grad_norm)
                opt.step()
                history.append({"iteration": t, "step": s, "loss": float(loss.detach()),
                                "self_reward_policy_samples": float(sy.logps.mean())})
        model.eval()
        if cfg.select == "j_beta":
            j_hat.append(estimate_j(t + 1))
            if j_hat[-1] > j_hat[best_t]:
                best_state, best_t = trainable_state(), t + 1
        if cfg.log_every:
            print(f"  xpo iteration {t}: |D|={len(D_p)} loss {history[-1]['loss']:.4f} "
                  f"log π_base(y~π^(t)) {float(sy.logps.mean()):.3f}"
                  + (f" Ĵ_β {j_hat[-1]:.3f}" if j_hat else ""), flush=True)
    if cfg.select == "j_beta":
        with torch.no_grad():
            params = dict(model.named_parameters())
            for k, v in best_state.items():
                params[k].copy_(v)
    metrics = {"algorithm": "xpo", "num_iterations": cfg.num_iterations, "dataset_size": len(D_p),
               "queries": 2 * len(D_p) + selection_queries, "beta": cfg.beta, "alpha": cfg.alpha,
               "self_reward": float(torch.tensor(D_ref_b).mean()),
               "policy_self_reward_last": float(torch.tensor(D_ref_y[-cfg.prompts_per_iteration:]).mean()),
               "select": cfg.select, "selected_iteration": best_t if cfg.select == "j_beta" else cfg.num_iterations,
               "j_beta_estimates": j_hat}
    data = {"prompt": D_x, "policy_completion": texts_y, "base_completion": texts_b,
            "ref_policy_logps": D_ref_y, "ref_base_logps": D_ref_b, "policy_truncated": trunc_y,
            "base_truncated": trunc_b}
    losses = [h["loss"] for h in history]
    w = max(1, min(cfg.steps_per_iteration, len(losses)))
    conv = {"steps_run": len(losses), "first_loss": losses[0], "final_loss": sum(losses[-w:]) / w,
            "selected_iteration": metrics["selected_iteration"], "j_beta_estimates": j_hat}
    metrics["final_loss"] = conv["final_loss"]
    return SharpeningResult(model, metrics, history, data, conv)
