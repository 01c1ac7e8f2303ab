"""Ghost clipping in one backward pass (the engine behind ``make_private``).

Imports torch and opacus; :mod:`secagg_rec.privacy` imports it only when
:func:`~secagg_rec.privacy.make_private` runs.

How a step works (``grad_sample_mode="ghost"``):

1. **Forward** — hooks (:class:`GhostClippingHooks`, a subclass of Opacus's
   ghost-clipping hooks, attached to the user's module in place) keep each layer's
   input and, for ``nn.Linear``/``nn.Embedding``, put a pre-hook on the autograd node
   that produced the layer's output.
2. **Backward** — the user's ordinary ``loss.backward()``. For every layer the hooks
   receive the per-example output gradients ``g_i`` (a ``"mean"`` loss is undone by
   the batch size, Opacus's convention) and compute per-example gradient *norms*
   without materialising per-example gradients: ``|g_i|·|a_i|`` for ``nn.Linear``, a
   sum over distinct ids for ``nn.Embedding`` ("ghost norms", as Opacus). Other layers
   with parameters go through Opacus's own hooks and get per-example gradients from
   its grad samplers or functorch.
3. **Step** — the optimizer takes the clip factors ``c_i = min(1, C/|∇ℓ_i|)`` over all
   parameters and sets each parameter's gradient to ``(Σ c_i ∇ℓ_i + N(0, σ²C²)) / B``
   (B = expected batch size for a ``"mean"`` loss, 1 for ``"sum"``), Opacus's DP-SGD
   update: the noise (one flat draw per step, made one step ahead on a helper thread
   by :mod:`secagg_rec.privacy.noise`) becomes the gradients, and the clipped sum is
   added into it, rebuilt from
   the inputs and output gradients the hooks already hold ("book-keeping", Bu et al.
   2023) — ``Σ c_i g_i a_iᵀ`` for a linear weight, a scatter-add of ``c_i g_it`` into
   rows ``x_it`` for an embedding. This replaces the unclipped gradient autograd
   computed; then the user's optimizer steps (through Opacus's optimizer wrapper).

Opacus's own ghost mode gets ``Σ c_i ∇ℓ_i`` from a second backward pass over
``Σ c_i ℓ_i``, which needs the per-example losses and therefore a wrapped criterion in
the training loop. Step 3 needs neither: one backward, and the loop calls its own loss.
The result is the same clipped sum (the tests check it against per-example gradients
from ``torch.func`` and against Opacus's two-pass ghost mode).

Contract on the loss (as for any DP-SGD): it is the mean (``loss_reduction="mean"``) or
sum of per-example terms, each depending on its own example only. Terms on the
parameters themselves (an L2 penalty added to the loss) do not pass through the layers'
hooks and are dropped; use the optimizer's ``weight_decay`` instead.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from functools import partial
from typing import Any

import torch
from opacus.grad_sample.functorch import ft_compute_per_sample_gradient, prepare_layer
from opacus.grad_sample.grad_sample_module_fast_gradient_clipping import (
    GradSampleHooksFastGradientClipping,
)
from opacus.optimizers import DPOptimizer, DPOptimizerFastGradientClipping
from torch import nn

from secagg_rec.errors import BudgetExceededError, LocalProtocolError
from secagg_rec.privacy.noise import NoiseStream, split_like

__all__ = [
    "GhostClippingHooks",
    "GhostPrivateOptimizer",
    "PrivateOptimizer",
    "SessionState",
    "embedding_clipped_sum",
    "embedding_squared_norms",
    "linear_clipped_sum",
    "linear_squared_norms",
]

# PyTorch warns once per call site that a full backward hook on a module whose inputs
# need no gradient (an embedding fed with ids) fires on the output gradients: that is
# exactly what the hooks want.
warnings.filterwarnings(
    "ignore",
    message="Full backward hook is firing when gradients are computed with respect to module "
    "outputs since no inputs require gradients",
)

ParamTensors = dict[nn.Parameter, torch.Tensor]


# ---- per-example squared gradient norms ------------------------------------------------


def _rowwise_square_sum(x: torch.Tensor) -> torch.Tensor:
    """``Σ_j x_ij²`` for each row of a 2-D tensor, ``[B]`` (one kernel)."""
    return torch.linalg.vecdot(x, x)


def _embedding_grads(
    layer: nn.Embedding, ids: torch.Tensor, backprops: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """ids ``[B, L]`` and output gradients ``[B, L, D]``, padding positions zeroed.

    One id per example (ids ``[B]``) stays ``[B]`` / ``[B, D]``, without reshaping:
    the output gradient is often a strided view (from ``torch.cat``), and a reshape
    would copy it.
    """
    grads = backprops
    if ids.dim() != 1:
        batch = ids.shape[0]
        ids = ids.reshape(batch, -1)
        grads = backprops.reshape(batch, ids.shape[1], backprops.shape[-1])
    if layer.padding_idx is not None:
        # PyTorch gives the padding row no gradient; it must not count or be added.
        grads = grads * (ids != layer.padding_idx).unsqueeze(-1).to(grads.dtype)
    return ids, grads


def embedding_squared_norms(
    layer: nn.Embedding, ids: torch.Tensor, backprops: torch.Tensor
) -> torch.Tensor:
    """Per-example squared L2 norms of ``layer.weight``'s gradient, ``[B]``, without
    materialising the gradient.

    Example i looks up ids ``x_i1..x_iL`` and receives output gradients ``g_i1..g_iL``;
    its weight gradient has row ``v`` equal to the sum of ``g_it`` over ``x_it = v``, so
    its squared norm is the sum over distinct ids of ``|sum of g_it|²``. With L = 1 that
    is just ``|g_i1|²``. Worked case: ids ``[[1, 1], [2, 0]]``, gradients
    ``[[0.2], [0.2]]`` and ``[[0.3], [0.1]]`` (D = 1) give ``0.4² = 0.16`` and
    ``0.3² + 0.1² = 0.10``.

    Same mathematics as Opacus's sampler, keyed on a 1-D ``row * V + id`` so that it
    needs a 1-D ``torch.unique`` instead of the much slower ``unique(dim=0)``, and with
    ``padding_idx`` honoured.
    """
    if ids.shape[0] == 0:
        return backprops.new_zeros(0)
    ids, grads = _embedding_grads(layer, ids, backprops)
    if ids.dim() == 1:
        return _rowwise_square_sum(grads)
    if ids.shape[1] == 1:
        return _rowwise_square_sum(grads[:, 0, :])
    batch, dim = grads.shape[0], grads.shape[-1]
    vocab = layer.num_embeddings
    rows = torch.arange(batch, device=ids.device).unsqueeze(1)
    unique_keys, inverse = torch.unique((rows * vocab + ids).reshape(-1), return_inverse=True)
    summed = grads.new_zeros(unique_keys.numel(), dim)
    summed.index_add_(0, inverse, grads.reshape(-1, dim))
    return grads.new_zeros(batch).index_add_(
        0, torch.div(unique_keys, vocab, rounding_mode="floor"), summed.pow(2).sum(1)
    )


def linear_squared_norms(
    layer: nn.Linear, activation: torch.Tensor, backprops: torch.Tensor
) -> torch.Tensor:
    """Per-example squared gradient norms of ``nn.Linear`` over its trainable weight and
    bias (ghost norm), ``[B]``.

    With one input row per example the weight gradient is the outer product
    ``g_i a_iᵀ``, whose squared norm is ``|g_i|²·|a_i|²``; the bias gradient is ``g_i``.
    Inputs with extra (sequence) dimensions go to Opacus's general sampler.
    """
    if backprops.dim() != 2:
        norms = _OPACUS_LINEAR_NORM_SAMPLER(layer, [activation], backprops)
        parts = [n.pow(2) for p, n in norms.items() if p.requires_grad]
        return torch.stack(parts).sum(0)
    g2 = _rowwise_square_sum(backprops)
    has_bias = layer.bias is not None and layer.bias.requires_grad
    if not layer.weight.requires_grad:
        return g2
    a2 = _rowwise_square_sum(activation.to(backprops.dtype))
    return torch.addcmul(g2, g2, a2) if has_bias else g2 * a2


_OPACUS_LINEAR_NORM_SAMPLER = GradSampleHooksFastGradientClipping.NORM_SAMPLERS[nn.Linear]


# ---- clipped gradient sums ---------------------------------------------------------------


def _scale_rows(tensor: torch.Tensor, coef: torch.Tensor) -> torch.Tensor:
    return tensor * coef.view(-1, *([1] * (tensor.dim() - 1)))


def embedding_clipped_sum(
    layer: nn.Embedding,
    ids: torch.Tensor,
    backprops: torch.Tensor,
    coef: torch.Tensor,
    out: ParamTensors,
) -> None:
    """Add ``Σ_i c_i ∇_W ℓ_i`` into ``out[layer.weight]``: scatter-add ``c_i g_it`` into
    rows ``x_it`` (positions holding ``padding_idx`` add nothing)."""
    if not layer.weight.requires_grad or ids.shape[0] == 0:
        return
    if ids.dim() == 1 and layer.padding_idx is None:  # one id per example: no reshaping
        out[layer.weight].index_add_(0, ids, backprops * coef.unsqueeze(1))
        return
    ids, grads = _embedding_grads(layer, ids, backprops)
    dim = grads.shape[-1]
    out[layer.weight].index_add_(0, ids.reshape(-1), _scale_rows(grads, coef).reshape(-1, dim))


def linear_clipped_sum(
    layer: nn.Linear,
    activation: torch.Tensor,
    backprops: torch.Tensor,
    coef: torch.Tensor,
    out: ParamTensors,
) -> None:
    """Add ``Σ_i c_i g_i a_iᵀ`` into ``out[layer.weight]`` and ``Σ_i c_i g_i`` into
    ``out[layer.bias]`` (sums over sequence positions too, for 3-D inputs)."""
    scaled = _scale_rows(backprops, coef)
    scaled_2d = scaled.reshape(-1, scaled.shape[-1])
    if layer.weight.requires_grad:
        inputs = activation.to(backprops.dtype).reshape(-1, layer.in_features)
        out[layer.weight].addmm_(scaled_2d.t(), inputs)
    if layer.bias is not None and layer.bias.requires_grad:
        out[layer.bias].add_(scaled_2d.sum(0))


ClippedSum = Callable[[Any, torch.Tensor, torch.Tensor, torch.Tensor, ParamTensors], None]
SquaredNorms = Callable[[Any, torch.Tensor, torch.Tensor], torch.Tensor]
CLIPPED_SUMS: dict[type[nn.Module], ClippedSum] = {
    nn.Embedding: embedding_clipped_sum,
    nn.Linear: linear_clipped_sum,
}
SQUARED_NORMS: dict[type[nn.Module], SquaredNorms] = {
    nn.Embedding: embedding_squared_norms,
    nn.Linear: linear_squared_norms,
}


# ---- hooks ---------------------------------------------------------------------------------


class GhostClippingHooks(GradSampleHooksFastGradientClipping):
    """Opacus ghost-clipping hooks that keep what the clipped sum needs.

    ``nn.Linear`` and ``nn.Embedding`` layers get a forward hook that puts a pre-hook on
    the autograd node that produced the layer's output, so the output gradient arrives
    with no extra autograd nodes (Opacus's full backward hooks wrap every input and
    output in one, which costs more than the norm itself on small layers). The backward
    hook adds the layer's per-example *squared* norms into one running sum per pass.
    Every other layer with parameters goes through Opacus's own hooks and per-example
    gradients (grad samplers or functorch).

    After a backward pass, :meth:`clip_gradients` sets every trainable parameter's
    ``.grad`` to the sum of clipped per-example gradients. :meth:`reset` forgets the
    pass (called by the optimizer's ``zero_grad``).

    Raises (from inside ``loss.backward()``):
        LocalProtocolError: a layer's parameters got two gradients before the optimizer
            step (two backward passes, or a layer used twice in one forward).
    """

    def __init__(self, module: nn.Module, *, loss_reduction: str, max_grad_norm: float) -> None:
        # The fast layers are exactly those we can rebuild a clipped sum for; Opacus's
        # class-level registry is left untouched.
        self.NORM_SAMPLERS = dict(SQUARED_NORMS)
        self._records: list[tuple[nn.Module, torch.Tensor, torch.Tensor, float]] = []
        self._grad_samples: ParamTensors = {}
        # Per-example squared norms summed over layers, by the pass's "mean" scale.
        self._squared: dict[float, torch.Tensor] = {}
        self._seen: set[int] = set()  # ids of the parameters that got a gradient
        self._has_pass = False
        super().__init__(
            module,
            batch_first=True,
            loss_reduction=loss_reduction,
            strict=True,
            max_grad_norm=max_grad_norm,
            use_ghost_clipping=True,
        )

    def add_hooks(
        self,
        *,
        loss_reduction: str = "mean",
        batch_first: bool = True,
        force_functorch: bool = False,
    ) -> None:
        """Attach the hooks (called once by Opacus's constructor). Handles go to the
        list Opacus's ``remove_hooks``/``cleanup`` empties."""
        if hasattr(self._module, "autograd_grad_sample_hooks"):
            raise ValueError("hooks are already attached to this module")
        handles: list[Any] = []
        self._module.autograd_grad_sample_hooks = handles
        self.autograd_grad_sample_hooks = handles
        for sub in self.iterate_submodules(self._module):
            if type(sub) in self.NORM_SAMPLERS:
                handles.append(sub.register_forward_hook(self._fast_forward_hook))
                continue
            if type(sub) not in self.GRAD_SAMPLERS:
                prepare_layer(sub, batch_first=batch_first)
            handles.append(sub.register_forward_hook(self.capture_activations_hook))
            handles.append(
                sub.register_full_backward_hook(
                    partial(
                        self.capture_backprops_hook,
                        loss_reduction=loss_reduction,
                        batch_first=batch_first,
                    )
                )
            )
        self.enable_hooks()

    def _fast_forward_hook(self, module: nn.Module, inputs: Any, output: Any) -> None:
        if not (self.hooks_enabled and module.training and torch.is_grad_enabled()):
            return
        params = [
            p
            for p in (module.weight, getattr(module, "bias", None))
            if p is not None and p.requires_grad
        ]
        if not params:
            return  # a frozen layer contributes nothing (its input may still need grad)
        node = getattr(output, "grad_fn", None)
        if node is None:
            return  # nothing in this layer needs a gradient
        # A pre-hook on the node that produced the output receives the output gradient
        # (even if the output is later changed in place); cheaper than Tensor.register_hook.
        node.register_prehook(partial(self._fast_backward_hook, module, params, inputs[0].detach()))

    def _fast_backward_hook(
        self,
        module: nn.Module,
        params: list[nn.Parameter],
        activation: torch.Tensor,
        grad_outputs: Any,
    ) -> None:
        if not self.hooks_enabled:
            return
        for param in params:  # the layer's trainable parameters at forward time
            if id(param) in self._seen:  # a layer used twice, or weights tied
                raise _two_gradients()
            self._seen.add(id(param))
        backprops = grad_outputs[0].detach()
        # Opacus's convention: per-example gradients of the per-example losses, so a
        # "mean" loss is undone by the actual batch size. Applied to the summed squared
        # norms and the clip factors rather than to the [B, ..., D] gradients.
        scale = float(activation.shape[0]) if self.loss_reduction == "mean" else 1.0
        self._add_squared(SQUARED_NORMS[type(module)](module, activation, backprops), scale)
        self._records.append((module, activation, backprops, scale))
        self._has_pass = True

    def _add_squared(self, squared: torch.Tensor, scale: float) -> None:
        """Add per-example squared norms (a tensor this class owns) to the pass's sum."""
        total = self._squared.get(scale)
        if total is None:
            self._squared[scale] = squared
        elif total.device == squared.device and total.dtype == squared.dtype:
            total.add_(squared)
        else:  # layers on several devices or dtypes: keep the first device, promote
            self._squared[scale] = total + squared.to(total.device)

    def capture_activations_hook(
        self, module: nn.Module, forward_input: Any, _forward_output: Any
    ) -> None:
        if (
            self.hooks_enabled
            and module.training
            and torch.is_grad_enabled()
            and module.__dict__.get("activations")
            and any(p.requires_grad for p in module.parameters(recurse=False))
        ):
            raise LocalProtocolError(
                f"layer {type(module).__name__} ran a second time before the backward "
                "pass: either the model calls it twice in one forward (weight tying, not "
                "supported by ghost clipping: use grad_sample_mode='hooks'), or a "
                "training-mode forward pass was never followed by loss.backward() (run "
                "evaluation under torch.no_grad() or model.eval())"
            )
        super().capture_activations_hook(module, forward_input, _forward_output)

    def capture_backprops_hook(
        self,
        module: nn.Module,
        _forward_input: Any,
        forward_output: Any,
        loss_reduction: str,
        batch_first: bool,
    ) -> None:
        """Opacus path (layers without a norm sampler): keep per-example gradients."""
        if not self.hooks_enabled:
            return
        activations, backprops = self.rearrange_grad_samples(
            module=module,
            backprops=forward_output[0].detach(),
            loss_reduction=loss_reduction,
            batch_first=batch_first,
        )
        if not module.activations and hasattr(module, "max_batch_len"):
            del module.max_batch_len
        grad_sampler = self.GRAD_SAMPLERS.get(type(module), ft_compute_per_sample_gradient)
        for param, sample in grad_sampler(module, activations, backprops).items():
            if not param.requires_grad:
                continue
            if id(param) in self._seen:
                raise _two_gradients()
            self._seen.add(id(param))
            param._forward_counter -= 1
            # Opacus already undid a "mean" reduction: scale 1.
            self._add_squared(sample.reshape(sample.shape[0], -1).pow(2).sum(1), 1.0)
            self._grad_samples[param] = sample
        self._has_pass = True

    def per_example_norms(self) -> torch.Tensor:
        """Per-example L2 norms of the full gradient (all parameters), ``[B]``.

        A parameter the forward pass did not use has zero gradient and no norm.

        Raises:
            LocalProtocolError: no backward pass since the last reset.
        """
        self.require_pass()
        total: torch.Tensor | None = None
        for scale, squared in self._squared.items():
            part = squared * (scale * scale) if scale != 1.0 else squared
            total = part if total is None else total + part.to(total.device)
        assert total is not None
        return total.sqrt()

    @property
    def has_pass(self) -> bool:
        """A backward pass has run since the last reset."""
        return self._has_pass

    def require_pass(self) -> None:
        """Raise unless a backward pass left per-example norms since the last reset.

        Raises:
            LocalProtocolError: no such pass.
        """
        if not self._has_pass or not self._squared:
            raise LocalProtocolError(
                "optimizer.step() without a backward pass through the model: run the "
                "forward pass (in training mode, with grad enabled) and loss.backward() "
                "first"
            )

    def clip_gradients(
        self,
        *,
        scale: float = 1.0,
        noise: torch.Tensor | None = None,
        noise_std: float = 0.0,
        generator: torch.Generator | None = None,
        empty_batch: bool = False,
    ) -> torch.Tensor:
        """Set each trainable parameter's ``.grad`` to ``scale · Σ_i c_i ∇ℓ_i + noise``.

        Args:
            scale: constant factor on the clipped sum (1/B for a ``"mean"`` loss).
            noise: the noise for all of :attr:`trainable_parameters`, flat and in their
                order (σ·C·scale standard deviation for DP-SGD, from a
                :class:`~secagg_rec.privacy.noise.NoiseStream`); the gradients become
                views of it, with the clipped sums added in place. Overrides
                ``noise_std``.
            noise_std: without ``noise``: the standard deviation of the i.i.d. Gaussian
                noise drawn here for every coordinate of every trainable parameter; 0
                for none.
            generator: source of that noise.
            empty_batch: the batch is known to be empty, so no backward pass is
                needed: the gradient is the noise alone.

        Returns:
            The clip factors ``c`` (``[B]``). Parameters the forward pass did not use
            get noise only.

        Raises:
            LocalProtocolError: no backward pass (and not ``empty_batch``).
        """
        noise_only = empty_batch and not self._has_pass
        norms = torch.zeros(0) if noise_only else self.per_example_norms()
        coef = (self.max_grad_norm / (norms + 1e-6)).clamp_(max=1.0)
        self.per_sample_gradient_norms = norms
        params = self.trainable_parameters
        if noise is not None:
            out = dict(zip(params, split_like(noise, params), strict=True))
        elif noise_std > 0:
            out = {
                p: torch.empty_like(p).normal_(0.0, noise_std, generator=generator) for p in params
            }
        else:
            out = {p: torch.zeros_like(p) for p in params}
        factors: dict[float, torch.Tensor] = {}  # one per "mean" scale (one per pass)
        for module, activation, backprops, undo_mean in self._records:
            factor = factors.get(undo_mean)
            if factor is None:
                factor = factors[undo_mean] = coef * (undo_mean * scale)
            if factor.dtype != backprops.dtype or factor.device != backprops.device:
                factor = factor.to(backprops)
            CLIPPED_SUMS[type(module)](module, activation, backprops, factor, out)
        for param, sample in self._grad_samples.items():
            out[param].add_(torch.einsum("n,n...->...", (coef * scale).to(sample), sample))
        for param, grad in out.items():
            param.grad = grad
        self.reset()
        return coef

    def reset(self) -> None:
        """Forget the last backward pass (kept inputs, output gradients, norms).

        Inputs kept by a forward pass that has not been through backward yet stay:
        ``out = model(x); optimizer.zero_grad(); loss.backward()`` is a valid loop.
        """
        self._records.clear()
        self._grad_samples.clear()
        self._squared.clear()
        self._seen.clear()
        self._has_pass = False


def _two_gradients() -> LocalProtocolError:
    return LocalProtocolError(
        "a parameter received two gradients before optimizer.step(): either two backward "
        "passes ran (call optimizer.step() or zero_grad() after each loss.backward(); "
        "gradient accumulation is not supported) or the model uses a layer twice in one "
        "forward (weight tying: use grad_sample_mode='hooks')"
    )


# ---- optimizers ------------------------------------------------------------------------------


class SessionState:
    """Counters and guards shared by a private session's optimizer.

    Attributes:
        steps_taken: noisy optimizer steps so far.
        max_steps: refuse steps beyond this (planned / reserved steps), or ``None``.
        committed: set once the spend is committed; every later step raises.
        closed: set by ``close()``; every later step raises.
    """

    def __init__(self, *, max_steps: int | None, sampler: Any = None) -> None:
        self.steps_taken = 0
        self.max_steps = max_steps
        self.committed = False
        self.closed = False
        self.sampler = sampler

    def holding_empty_batch(self) -> bool:
        """The loop holds an empty Poisson batch (known only with ``num_workers=0``),
        so a step without a backward pass is a legitimate noise-only step."""
        return self.sampler is not None and self.sampler.last_size == 0

    def before_step(self) -> None:
        """Raise if this step must not happen; called before anything is computed."""
        if self.closed:
            raise LocalProtocolError(
                "this private training session is closed; call make_private again"
            )
        if self.committed:
            raise LocalProtocolError(
                "this session's privacy spend is already committed; a further step would "
                "not be recorded (start a new session for more training)"
            )
        if self.max_steps is not None and self.steps_taken >= self.max_steps:
            raise BudgetExceededError(
                f"all {self.max_steps} planned steps are taken; another step would spend "
                "privacy budget that was not planned or reserved (plan more steps or "
                "start a new session)"
            )

    def after_step(self) -> None:
        self.steps_taken += 1


class PrivateOptimizer(DPOptimizer):
    """Opacus ``DPOptimizer`` for hooks mode (per-example gradients materialised),
    reporting to a :class:`SessionState`."""

    def __init__(self, optimizer: torch.optim.Optimizer, *, session: SessionState, **kw: Any):
        super().__init__(optimizer, **kw)
        self._session = session

    def pre_step(self, closure: Callable[[], float] | None = None) -> bool:
        self._session.before_step()
        if not any(getattr(p, "grad_sample", None) is not None for p in self.params):
            if not self._session.holding_empty_batch():
                raise LocalProtocolError(
                    "optimizer.step() without per-example gradients: run the forward "
                    "pass and loss.backward() first"
                )
            # An empty Poisson batch: the released gradient is the noise alone.
            divisor = float(self.expected_batch_size) if self.loss_reduction == "mean" else 1.0
            std = float(self.noise_multiplier) * float(self.max_grad_norm) / divisor
            for p in self.params:
                p.grad = torch.empty_like(p).normal_(0.0, std, generator=self.generator)
            self._session.after_step()
            return True
        ok = bool(super().pre_step(closure))
        if ok:
            self._session.after_step()
        return ok


class GhostPrivateOptimizer(DPOptimizerFastGradientClipping):
    """Opacus's ghost-clipping optimizer around the user's optimizer, whose DP part
    is done by :meth:`GhostClippingHooks.clip_gradients` in one pass per parameter:

    ``p.grad = (Σ_i c_i ∇ℓ_i + N(0, (σC)² I)) / B``  (B = expected batch size for a
    ``"mean"`` loss, 1 for ``"sum"``), exactly Opacus's update, then the user's
    optimizer steps. Opacus's accumulate / add_noise / scale_grad are not used.
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        *,
        session: SessionState,
        hooks: GhostClippingHooks,
        prefetch_noise: bool = True,
        **kw: Any,
    ):
        super().__init__(optimizer, **kw)
        self._session = session
        self._hooks = hooks
        params = hooks.trainable_parameters
        dtypes = {p.dtype for p in params}
        on_cpu = all(p.device.type == "cpu" for p in params)
        # One flat draw per step (optionally one step ahead) needs one dtype on the CPU;
        # otherwise clip_gradients draws per parameter.
        self._noise: NoiseStream | None = None
        if params and len(dtypes) == 1 and on_cpu:
            self._noise = NoiseStream(
                sum(p.numel() for p in params),
                dtype=dtypes.pop(),
                generator=self.generator,
                prefetch=prefetch_noise,
                limit=session.max_steps,
            )

    @property
    def mean_divisor(self) -> float:
        """B for a ``"mean"`` loss (the expected batch size), 1 for ``"sum"``."""
        if self.loss_reduction == "mean":
            return float(self.expected_batch_size)
        return 1.0

    def pre_step(self, closure: Callable[[], float] | None = None) -> bool:
        self._session.before_step()
        empty_batch = self._session.holding_empty_batch()
        if self._hooks.has_pass or not empty_batch:
            self._hooks.require_pass()  # before any noise is drawn for this step
        divisor = self.mean_divisor
        std = float(self.noise_multiplier) * float(self.max_grad_norm) / divisor
        noise = self._noise.take(std) if self._noise is not None and std > 0 else None
        self._hooks.clip_gradients(
            scale=1.0 / divisor,
            noise=noise,
            noise_std=std,
            generator=self.generator,
            empty_batch=empty_batch,
        )
        if self.step_hook:
            self.step_hook(self)
        self._session.after_step()
        return True

    def close_noise(self) -> None:
        """Stop the noise stream's helper thread (called when the session closes)."""
        if self._noise is not None:
            self._noise.close()

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Forget the last pass; ``set_to_none`` defaults to True as in
        ``torch.optim.Optimizer`` (Opacus's wrapper defaults to False, which zeroes every
        gradient buffer in place each step for nothing: the step replaces them)."""
        super().zero_grad(set_to_none)
        self._hooks.reset()
