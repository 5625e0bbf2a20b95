"""Empirical neural tangent kernels (NTKs) of a minibatch, and how two of them are compared.

The NTK of a model f with parameters θ on a batch X is the n × n matrix

    Θ(x, x′) = Σ_c ∇θ f_c(x) · ∇θ f_c(x′)

with the output dimension c contracted (classes, or pooled pixels for segmentation). Three
engines compute it, all as pure functions of (model, images):

* :func:`ntk_exact` — per-sample Jacobians with ``torch.func`` (functional_call + vmap + jacrev),
  one parameter tensor at a time so memory stays at n × outputs × (largest tensor). The reference.
* :func:`ntk_estimate` — the method's finite-difference estimator (forward passes only):
  D_r = f(X; θ + εδ_r) − f(X; θ), δ_r ~ N(0, I), Θ̂ = Σ_r D_r D_rᵀ / (R ε²). Unbiased up to
  O(ε) and with a relative spread ≈ √(2/R) on the diagonal.
* :class:`TeacherSketch` — for a frozen teacher: exact directional derivatives J(x)s_r along m
  fixed random directions (forward-mode ``jvp``) are computed once per dataset, so the teacher's
  kernel of any batch is a Gram matrix of cached features, Θ̂ = Φ Φᵀ with E[Θ̂] = Θ.
* :class:`TeacherKernelTable` — for a frozen teacher on a small, fixed training set: its exact
  kernel between every pair of images, computed once, so a batch's kernel is a lookup.

Segmentation outputs (one logit per pixel) are average-pooled to ``output_pool`` × ``output_pool``
before contraction: the kernel then compares coarse maps (8 × 8 = 64 outputs by default), which
keeps Jacobians n × 64 × P instead of n × H·W × P. Every engine evaluates the *mean* function:
the model in eval mode (BatchNorm running statistics, no dropout) and the sensor noise model off.

Teacher and student kernels differ by orders of magnitude (the teacher has more parameters and
other scales), so they are compared after a normalisation (:data:`NORMALISATIONS`), each of which
maps a kernel to entries of order one; :func:`kernel_distance` is the mean squared difference.
"""

from __future__ import annotations

import contextlib
import math
import weakref
from collections.abc import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, jacrev, jvp, vjp, vmap

from ..errors import TrainingError

NORMALISATIONS = ("cka", "trace", "frobenius", "none")
DEFAULT_OUTPUT_POOL = 8
ParameterFilter = Callable[[str], bool]


def flat_outputs(outputs: torch.Tensor, output_pool: int = DEFAULT_OUTPUT_POOL) -> torch.Tensor:
    """Model outputs as (n, outputs): logits as they are; per-pixel maps pooled to output_pool²."""
    if outputs.dim() == 4:
        height, width = outputs.shape[-2:]
        if height > output_pool or width > output_pool:
            outputs = F.adaptive_avg_pool2d(outputs, (min(height, output_pool), min(width, output_pool)))
    return outputs.flatten(1)


@contextlib.contextmanager
def mean_function(model: nn.Module) -> Iterator[nn.Module]:
    """The model as a deterministic function: eval mode, optical sensor noise switched off."""
    from ..models import OpticalFrontend  # local: models import training-free, avoid a cycle

    was_training = model.training
    frontends = [m for m in model.modules() if isinstance(m, OpticalFrontend)]
    sensors = [frontend.sensor for frontend in frontends]
    model.eval()
    for frontend in frontends:
        frontend.sensor = None
    try:
        yield model
    finally:
        for frontend, sensor in zip(frontends, sensors, strict=True):
            frontend.sensor = sensor
        model.train(was_training)


def _split_parameters(
    model: nn.Module, include: ParameterFilter | None
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """(parameters the kernel is taken over, everything else the model needs: buffers, the rest).

    By default the kernel is over the trainable parameters; a fully frozen model (a teacher)
    has its kernel over all of its parameters.
    """
    trainable_only = any(p.requires_grad for p in model.parameters())
    chosen, fixed = {}, {}
    for name, parameter in model.named_parameters():
        if (parameter.requires_grad or not trainable_only) and (include is None or include(name)):
            chosen[name] = parameter
        else:
            fixed[name] = parameter
    fixed.update(dict(model.named_buffers()))
    if not chosen:
        raise TrainingError("the NTK needs at least one trainable parameter; none was selected.")
    return chosen, fixed


def _sample_outputs(
    model: nn.Module, others: dict[str, torch.Tensor], name: str, selected: slice, output_pool: int
) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """f(value of parameter ``name``, one image) → the selected outputs (for jacrev/vmap)."""

    def outputs(value: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        result = functional_call(model, {**others, name: value}, (image.unsqueeze(0),))
        return flat_outputs(result, output_pool)[0, selected]

    return outputs


def ntk_exact(
    model: nn.Module,
    images: torch.Tensor,
    *,
    include: ParameterFilter | None = None,
    output_pool: int = DEFAULT_OUTPUT_POOL,
    max_elements: int = 2**26,
    image_chunk: int | None = None,
) -> torch.Tensor:
    """Exact empirical NTK (n × n) of ``model`` on ``images`` over the selected parameters.

    Differentiable with respect to the parameters when they require grad (the NTKD loss needs
    that for the student); wrap in ``torch.no_grad()`` for a teacher. ``max_elements`` bounds a
    Jacobian block (n × outputs × parameters of one tensor) by splitting the outputs; when the
    whole Jacobian fits in it, all parameters are differentiated in one pass.
    ``image_chunk`` bounds the activations vmap holds at once (large images, many samples).
    """
    chosen, fixed = _split_parameters(model, include)
    step = image_chunk or len(images)
    with mean_function(model):
        outputs = flat_outputs(model(images[:1]), output_pool).shape[1]
        if len(images) * outputs * sum(p.numel() for p in chosen.values()) <= max_elements:

            def all_outputs(values: dict[str, torch.Tensor], image: torch.Tensor) -> torch.Tensor:
                return flat_outputs(functional_call(model, {**fixed, **values}, (image.unsqueeze(0),)), output_pool)[0]

            per_image = vmap(jacrev(all_outputs), in_dims=(None, 0))
            blocks = []
            for i in range(0, len(images), step):
                jacobians = per_image(chosen, images[i : i + step])
                blocks.append(torch.cat([j.flatten(1) for j in jacobians.values()], dim=1))
            jacobian = torch.cat(blocks)
            return jacobian @ jacobian.T
        kernel = images.new_zeros(len(images), len(images))
        for name, parameter in chosen.items():
            others = {**fixed, **{k: v for k, v in chosen.items() if k != name}}
            per_block = max(1, max_elements // max(1, len(images) * parameter.numel()))
            for first in range(0, outputs, per_block):
                one_sample = _sample_outputs(model, others, name, slice(first, min(outputs, first + per_block)),
                                             output_pool)  # fmt: skip
                per_image = vmap(jacrev(one_sample), in_dims=(None, 0))
                jacobian = torch.cat([per_image(parameter, images[i : i + step]) for i in range(0, len(images), step)])
                jacobian = jacobian.reshape(len(images), -1)
                kernel = kernel + jacobian @ jacobian.T
    return kernel


# ---------------------------------------------------------------------------- structured engine
def _owning_layers(model: nn.Module, chosen: dict[str, torch.Tensor]) -> dict[nn.Module, dict[str, torch.Tensor]]:
    """Each module that directly owns a chosen parameter, with those parameters by local name."""
    from ..models import IdealFrontend, OpticalFrontend

    modules = dict(model.named_modules())
    owners: dict[nn.Module, dict[str, torch.Tensor]] = {}
    for name, parameter in chosen.items():
        module_name, _, local = name.rpartition(".")
        module = modules[module_name]
        if isinstance(module, OpticalFrontend) and not isinstance(module, IdealFrontend):
            raise TrainingError(
                f"the structured NTK engine cannot take the kernel over layer '{module_name}' "
                f"({type(module).__name__}): its PSFs depend on the meta-atom radius maps through the wave "
                "optics, whose Jacobian is one optics backward pass per kernel tap and image. Fix: take the "
                "student kernel over the digital backend only (--ntk-parameters backend), or use --ntk-engine "
                "exact (slow)."
            )
        owners.setdefault(module, {})[local] = parameter
    return owners


@contextlib.contextmanager
def _recording(owners: dict[nn.Module, dict[str, torch.Tensor]]) -> Iterator[dict]:
    """Record each owning layer's input and output (forward hooks) while the block runs."""
    records: dict[nn.Module, list[tuple[torch.Tensor, torch.Tensor]]] = {module: [] for module in owners}

    def on_output(module: nn.Module, args: tuple, kwargs: dict, output: torch.Tensor) -> None:
        if len(args) != 1 or kwargs or not isinstance(args[0], torch.Tensor) or not isinstance(output, torch.Tensor):
            raise TrainingError(
                f"the structured NTK engine reads a layer's Jacobian from its one input and one output tensor; "
                f"layer {type(module).__name__} takes {len(args)} positional and {len(kwargs)} keyword inputs. "
                "Fix: use --ntk-engine exact."
            )
        records[module].append((args[0], output))

    handles = [module.register_forward_hook(on_output, with_kwargs=True) for module in owners]
    try:
        yield records
    finally:
        for handle in handles:
            handle.remove()


def _per_sample_gradients(
    module: nn.Module, parameters: dict[str, torch.Tensor], inputs: torch.Tensor, signals: torch.Tensor
) -> torch.Tensor:
    """(n, outputs, P) gradients of each sample's outputs w.r.t. a layer's parameters, from the
    signals (outputs, n, *layer output) back-propagated to its output: one vjp per sample and output."""

    def one_sample(image: torch.Tensor, signal: torch.Tensor) -> torch.Tensor:
        _, pull = vjp(lambda values: functional_call(module, values, (image.unsqueeze(0),))[0], parameters)
        gradients = vmap(pull)(signal)[0]
        return torch.cat([gradients[name].reshape(len(signal), -1) for name in parameters], dim=1)

    return vmap(one_sample)(inputs, signals.transpose(0, 1))


def _convolution_gradients(module: nn.Conv2d | nn.ConvTranspose2d, parameters: dict[str, torch.Tensor],
                           inputs: torch.Tensor, signals: torch.Tensor) -> torch.Tensor | None:  # fmt: skip
    """(outputs, n, P) per-sample gradients of a 2-D (transposed) convolution, or None if its
    options are not covered (groups, non-zero padding modes, 'same' padding).

    A convolution's weight gradient is the correlation of its input with the signal at its
    output; treating each sample (and, for the transposed convolution, each output direction)
    as a group of one grouped weight-gradient gives all of them in one call. A transposed
    convolution is the adjoint of a convolution with the same weight, so its weight gradient is
    that convolution's with input and signal swapped.
    """
    if module.groups != 1 or module.padding_mode != "zeros" or isinstance(module.padding, str):
        return None
    outputs, count = signals.shape[:2]
    options = {"stride": module.stride, "padding": module.padding, "dilation": module.dilation}
    blocks = []
    if "weight" in parameters:
        kernel_shape = tuple(module.weight.shape[1:])
        if isinstance(module, nn.Conv2d):
            gradient = torch.nn.grad.conv2d_weight(
                inputs.reshape(1, -1, *inputs.shape[2:]),
                (count * outputs * module.out_channels, *kernel_shape),
                signals.transpose(0, 1).reshape(1, -1, *signals.shape[3:]),
                groups=count,
                **options,
            )
            gradient = gradient.view(count, outputs, -1).transpose(0, 1)
        else:
            repeated = inputs.unsqueeze(0).expand(outputs, *inputs.shape)
            gradient = torch.nn.grad.conv2d_weight(
                signals.reshape(1, -1, *signals.shape[3:]),
                (outputs * count * module.in_channels, *kernel_shape),
                repeated.reshape(1, -1, *inputs.shape[2:]),
                groups=outputs * count,
                **options,
            )
            gradient = gradient.view(outputs, count, -1)
        blocks.append(gradient)
    if "bias" in parameters:
        blocks.append(signals.sum(dim=(-2, -1)))
    return torch.cat(blocks, dim=2)


def _layer_kernel(
    module: nn.Module, parameters: dict[str, torch.Tensor], inputs: torch.Tensor, signals: torch.Tensor
) -> torch.Tensor:
    """One layer's NTK block Σ_c ∇_W f_c(x_i)·∇_W f_c(x_j) (n × n) from its input and signals."""
    from ..models import IdealFrontend

    if isinstance(module, nn.Linear) and inputs.dim() == 2:
        # ∇_W f_c(x_i) = g_ic a_iᵀ, so the block is (A Aᵀ) ⊙ Σ_c G_c G_cᵀ (+ Σ_c G_c G_cᵀ for the bias).
        signal_gram = torch.einsum("cik,cjk->ij", signals, signals)
        kernel = (inputs @ inputs.T) * signal_gram if "weight" in parameters else torch.zeros_like(signal_gram)
        return kernel + signal_gram if "bias" in parameters else kernel
    if isinstance(module, IdealFrontend):
        # The readout is linear in the kernels: per-image kernel Jacobians from the signals and
        # the image patches, then chained through the kernel map (band limit, squaring) to the weight.
        kernel_jacobian = module.kernel_jacobian(inputs, signals)
        outputs, count = kernel_jacobian.shape[:2]
        _, pull = vjp(module.kernel_map, parameters["weight"])
        jacobian = vmap(pull)(kernel_jacobian.flatten(0, 1))[0].reshape(outputs, count, -1)
    else:
        jacobian = None
        if isinstance(module, nn.Conv2d | nn.ConvTranspose2d) and inputs.dim() == 4:
            jacobian = _convolution_gradients(module, parameters, inputs, signals)
        if jacobian is None:
            jacobian = _per_sample_gradients(module, parameters, inputs, signals).transpose(0, 1)
    return torch.einsum("cip,cjp->ij", jacobian, jacobian)


def ntk_structured(
    model: nn.Module,
    images: torch.Tensor,
    *,
    include: ParameterFilter | None = None,
    output_pool: int = DEFAULT_OUTPUT_POOL,
    output_chunk: int | None = None,
) -> torch.Tensor:
    """Exact empirical NTK (n × n) from the layers' structure: one batched backward per step.

    Every parameterised layer's block is built from what it saw and what flowed back to it:
    for a fully connected layer, ∇_W f_c(x) = g_c(x) a(x)ᵀ (back-propagated signal ⊗ input),
    so its block is (A Aᵀ) ⊙ Σ_c G_c G_cᵀ and no per-sample Jacobian is formed; an ideal
    optical frontend is linear in its kernels, so each image's kernel Jacobian is its signal
    correlated with its patches (one batched matrix product, then chained through the kernel
    map to the weight); a (transposed) convolution's per-sample Jacobians are one grouped weight
    gradient; any other layer (normalisation, custom modules) gets them from one vjp per sample
    and output. The signals for all outputs come
    from one batched backward (see :func:`_signal_pullback`). The result is differentiable
    with respect to the parameters when they require grad, so the kernel distance's gradient
    is exact. A physical frontend's radius maps are refused (see :func:`_owning_layers`).

    ``output_chunk``: outputs back-propagated at once (None: all); fewer bound the memory of
    the signals, n × chunk × (largest layer output).
    """
    chosen, _ = _split_parameters(model, include)
    owners = _owning_layers(model, chosen)
    needs_graph = torch.is_grad_enabled() and any(p.requires_grad for p in chosen.values())
    layers = list(owners)
    with torch.set_grad_enabled(needs_graph), mean_function(model):
        probes = [torch.zeros(shape, dtype=dtype, device=images.device)
                  for shape, dtype in _output_shapes(model, images, owners)]  # fmt: skip
        outputs, pull, inputs = _signal_pullback(model, images, owners, probes, output_pool)
        count, width = outputs.shape
        chunk = output_chunk or width
        kernel = outputs.new_zeros(count, count)
        for first in range(0, width, chunk):
            directions = torch.eye(width, dtype=outputs.dtype, device=outputs.device)[first : first + chunk]
            signals = vmap(pull)(directions.unsqueeze(1).expand(-1, count, -1))[0]
            for module, layer_input, signal in zip(layers, inputs, signals, strict=True):
                kernel = kernel + _layer_kernel(module, owners[module], layer_input, signal)
    return kernel


# Each model's layer output shapes per input shape: the probes are sized before the forward pass
# that differentiates them, so this saves a second forward on every later batch of that shape.
_OUTPUT_SHAPES: weakref.WeakKeyDictionary[nn.Module, dict[tuple, list]] = weakref.WeakKeyDictionary()


def _output_shapes(model: nn.Module, images: torch.Tensor, owners: dict) -> list:
    key = (tuple(images.shape), images.dtype, tuple(id(layer) for layer in owners))
    known = _OUTPUT_SHAPES.setdefault(model, {})
    if key not in known:
        with torch.no_grad(), _recording(owners) as records:
            model(images)
        _applied_once(model, records)
        known[key] = [(records[layer][0][1].shape, records[layer][0][1].dtype) for layer in owners]
    return known[key]


def _applied_once(model: nn.Module, records: dict[nn.Module, list]) -> None:
    for module, calls in records.items():
        if len(calls) != 1:
            name = next(n for n, m in model.named_modules() if m is module)
            raise TrainingError(
                f"the structured NTK engine needs each layer applied once per forward pass; layer '{name}' "
                f"({type(module).__name__}) was applied {len(calls)} times. Fix: use --ntk-engine exact."
            )


def _signal_pullback(
    model: nn.Module, images: torch.Tensor, owners: dict, probes: list[torch.Tensor], output_pool: int
) -> tuple[torch.Tensor, Callable[[torch.Tensor], tuple[list[torch.Tensor]]], list[torch.Tensor]]:
    """(outputs, the map from output cotangents to the signals at each layer's output, each layer's input).

    A zero probe is added to each layer's output and the model differentiated with respect to
    the probes (``torch.func.vjp``): the gradient with respect to a probe is the signal at that
    output. vmap over this pullback back-propagates many output directions in one pass; unlike
    autograd's batched gradients it has batching rules for convolution backward passes, whose
    second derivatives (the distance's gradient) would otherwise loop over the directions. The
    layers' inputs come out of the same forward pass, still differentiable in the parameters.
    """
    layers = list(owners)

    def outputs(values: list[torch.Tensor]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        with _recording(owners) as records:
            handles = [
                layer.register_forward_hook(lambda _module, _args, output, probe=probe: output + probe)
                for layer, probe in zip(layers, values, strict=True)
            ]
            try:
                result = flat_outputs(model(images), output_pool)
            finally:
                for handle in handles:
                    handle.remove()
        _applied_once(model, records)
        return result, [records[layer][0][0] for layer in layers]

    result, pull, inputs = vjp(outputs, probes, has_aux=True)
    return result, pull, inputs


def perturbation_directions(
    parameters: dict[str, torch.Tensor], draws: int, generator: torch.Generator | None = None
) -> dict[str, torch.Tensor]:
    """R standard-normal directions δ_r over the parameters, stacked on a leading axis."""
    return {
        name: torch.randn((draws, *p.shape), generator=generator, dtype=p.dtype).to(p.device)
        for name, p in parameters.items()
    }


def ntk_estimate(
    model: nn.Module,
    images: torch.Tensor,
    *,
    draws: int = 8,
    epsilon: float = 1e-3,
    generator: torch.Generator | None = None,
    include: ParameterFilter | None = None,
    output_pool: int = DEFAULT_OUTPUT_POOL,
    base: torch.Tensor | None = None,
    split: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Finite-difference NTK estimate Θ̂ = Σ_r D_r D_rᵀ / (R ε²) from R + 1 forward passes.

    ``epsilon`` is the step along each standard-normal direction (parameter units). The R
    perturbed passes run as one vectorised call. Differentiable w.r.t. the parameters.
    ``base``: the model's outputs f(X; θ) if the caller has them already (they must come from
    the mean function — no sensor noise, eval-mode layers — and keep their graph); saves a pass.
    ``split``: return two independent estimates, from the first and the second half of the
    draws (R ≥ 2), for losses that need unbiased products (:func:`kernel_distance_unbiased`).
    """
    if draws < (2 if split else 1) or not epsilon > 0:
        raise TrainingError(
            f"the NTK estimator needs draws ≥ {2 if split else 1} and epsilon > 0; got {draws}, {epsilon}."
        )
    chosen, fixed = _split_parameters(model, include)
    directions = perturbation_directions(chosen, draws, generator)
    with mean_function(model):
        if base is None:
            base = functional_call(model, {**fixed, **chosen}, (images,))
        base = flat_outputs(base, output_pool)

        def perturbed(step: dict[str, torch.Tensor]) -> torch.Tensor:
            moved = {name: p + epsilon * step[name] for name, p in chosen.items()}
            return flat_outputs(functional_call(model, {**fixed, **moved}, (images,)), output_pool)

        differences = vmap(perturbed)(directions) - base  # (R, n, outputs)

    def gram(block: torch.Tensor) -> torch.Tensor:
        flat = block.permute(1, 0, 2).reshape(len(images), -1)
        return flat @ flat.T / (len(block) * epsilon**2)

    if split:
        half = draws // 2
        return gram(differences[:half]), gram(differences[half:])
    return gram(differences)


class TeacherSketch:
    """Cached random-projection features of a frozen model's Jacobian: Θ̂(batch) = Φ Φᵀ.

    Φ(x) = [J(x) s_1, …, J(x) s_m] / √m with s_r ~ N(0, I) (exact ``jvp`` products), so
    E[Φ Φᵀ] = Θ exactly and the relative spread of a diagonal entry is ≈ √(2/m). The features of
    every image are computed once (m forward-mode passes per image) and stored as float32,
    n_images × m × outputs.
    """

    def __init__(
        self,
        model: nn.Module,
        images: torch.Tensor,
        *,
        directions: int = 64,
        seed: int = 0,
        output_pool: int = DEFAULT_OUTPUT_POOL,
        batch_size: int = 256,
        progress: Callable[[int, int], None] | None = None,
    ) -> None:
        if directions < 1:
            raise TrainingError(f"the teacher sketch needs ≥ 1 direction; got {directions}.")
        chosen, fixed = _split_parameters(model, None)
        generator = torch.Generator().manual_seed(seed)
        steps = perturbation_directions({k: v.detach() for k, v in chosen.items()}, directions, generator)
        primals = {k: v.detach() for k, v in chosen.items()}
        blocks = []
        with torch.no_grad(), mean_function(model):
            for start in range(0, len(images), batch_size):
                batch = images[start : start + batch_size]

                def outputs(params: dict[str, torch.Tensor], batch: torch.Tensor = batch) -> torch.Tensor:
                    return flat_outputs(functional_call(model, {**fixed, **params}, (batch,)), output_pool)

                def tangent(step: dict[str, torch.Tensor]) -> torch.Tensor:
                    return jvp(outputs, (primals,), (step,))[1]

                blocks.append(vmap(tangent)(steps).permute(1, 0, 2).float() / math.sqrt(directions))
                if progress:
                    progress(min(len(images), start + batch_size), len(images))
        self.features = torch.cat(blocks)  # (n_images, m, outputs)
        self.directions = directions

    @classmethod
    def from_features(cls, features: torch.Tensor) -> TeacherSketch:
        """A sketch from stored features (n_images × m × outputs), e.g. a cache file."""
        sketch = cls.__new__(cls)
        sketch.features, sketch.directions = features, features.shape[1]
        return sketch

    def kernel(self, index: torch.Tensor) -> torch.Tensor:
        """Θ̂ of the images at ``index`` (positions in the image set the sketch was built on)."""
        features = self.features[index].flatten(1)
        return features @ features.T


class TeacherKernelTable:
    """A frozen model's exact NTK between every pair of a fixed image set (n × n, the images' dtype).

    Built blockwise from per-image Jacobians (``torch.func``, as :func:`ntk_exact`): the rows of
    one block of images (block × outputs × parameters, at most ``max_elements``) are held while
    the images from that block on stream past in small groups, so memory stays near one block
    and a kernel entry is one dot product of exact Jacobians. Cost: about n·(1 + (blocks − 1)/2)
    per-image Jacobians (:meth:`cost`); it pays when training would otherwise evaluate the
    teacher's exact kernel on every minibatch of many epochs.
    """

    def __init__(
        self,
        model: nn.Module,
        images: torch.Tensor,
        *,
        output_pool: int = DEFAULT_OUTPUT_POOL,
        max_elements: int = 2**28,
        group: int = 8,
        progress: Callable[[int, int], None] | None = None,
    ) -> None:
        chosen, fixed = _split_parameters(model, None)
        primals = {k: v.detach() for k, v in chosen.items()}
        count = len(images)
        with torch.no_grad(), mean_function(model):
            outputs = flat_outputs(model(images[:1]), output_pool).shape[1]

            def all_outputs(values: dict[str, torch.Tensor], image: torch.Tensor) -> torch.Tensor:
                return flat_outputs(functional_call(model, {**fixed, **values}, (image.unsqueeze(0),)), output_pool)[0]

            per_image = vmap(jacrev(all_outputs), in_dims=(None, 0))

            def rows(start: int, stop: int) -> torch.Tensor:
                parts = []
                for first in range(start, stop, group):
                    jacobians = per_image(primals, images[first : min(stop, first + group)])
                    parts.append(torch.cat([j.flatten(2) for j in jacobians.values()], dim=2).flatten(1))
                return torch.cat(parts)

            block = self.block_size(count, outputs * sum(p.numel() for p in primals.values()), max_elements)
            table = images.new_zeros(count, count)
            total, done = self.cost(count, block), 0
            for start in range(0, count, block):
                stop = min(count, start + block)
                held = rows(start, stop)
                done += stop - start
                table[start:stop, start:stop] = held @ held.T
                for first in range(stop, count, group):
                    last = min(count, first + group)
                    cross = held @ rows(first, last).T
                    table[start:stop, first:last], table[first:last, start:stop] = cross, cross.T
                    done += last - first
                    if progress:
                        progress(done, total)
                if progress:
                    progress(done, total)
        self.table = table

    @staticmethod
    def block_size(count: int, row_elements: int, max_elements: int = 2**28) -> int:
        """Images per held block: as many Jacobian rows (outputs × parameters each) as fit."""
        return max(1, min(count, max_elements // max(1, row_elements)))

    @staticmethod
    def cost(count: int, block: int) -> int:
        """Per-image Jacobians the table evaluates (each block once, then every later image once per block)."""
        blocks = math.ceil(count / block)
        return sum(count - start for start in range(0, blocks * block, block))

    @classmethod
    def from_table(cls, table: torch.Tensor) -> TeacherKernelTable:
        """A table from a stored n × n kernel, e.g. a cache file."""
        kernels = cls.__new__(cls)
        kernels.table = table
        return kernels

    def kernel(self, index: torch.Tensor) -> torch.Tensor:
        """Θ of the images at ``index`` (positions in the image set the table was built on)."""
        return self.table[index][:, index]


def _centre(kernel: torch.Tensor) -> torch.Tensor:
    """H Θ H with H = I − 11ᵀ/n: the kernel of the features with their batch mean removed."""
    return kernel - kernel.mean(dim=0, keepdim=True) - kernel.mean(dim=1, keepdim=True) + kernel.mean()


def normalise_kernel(kernel: torch.Tensor, how: str) -> torch.Tensor:
    """Scale a kernel so that teacher and student are comparable; entries end up of order one.

    * ``trace``: Θ / mean(diag Θ) (each sample's self-similarity averages 1);
    * ``frobenius``: n · Θ / ‖Θ‖_F;
    * ``cka``: centred (HΘH, H = I − 11ᵀ/n), then n · Θ_c / ‖Θ_c‖_F — the mean squared difference of
      two such kernels is 2(1 − CKA), so it ignores both scale and a constant offset;
    * ``none``: as is.
    """
    n = kernel.shape[0]
    tiny = torch.finfo(kernel.dtype).tiny ** 0.5
    if how == "none":
        return kernel
    if how == "trace":
        return kernel / kernel.diagonal().mean().clamp_min(tiny)
    if how == "cka":
        kernel = _centre(kernel)
    if how in ("frobenius", "cka"):
        return n * kernel / torch.linalg.matrix_norm(kernel).clamp_min(tiny)
    raise TrainingError(f"unknown NTK normalisation {how!r}; choose one of {', '.join(NORMALISATIONS)}.")


def kernel_distance(teacher: torch.Tensor, student: torch.Tensor, how: str = "cka") -> torch.Tensor:
    """D(Θ_teacher, Θ_student): mean squared difference of the normalised kernels (teacher detached)."""
    return (normalise_kernel(teacher.detach(), how) - normalise_kernel(student, how)).pow(2).mean()


def kernel_distance_unbiased(
    teacher: torch.Tensor, first: torch.Tensor, second: torch.Tensor, how: str = "cka"
) -> torch.Tensor:
    """mean((N(Θ_T) − N(Θ̂₁)) ⊙ (N(Θ_T) − N(Θ̂₂))) for two independent student estimates.

    Its expectation is the distance of the *true* student kernel when N is linear, whereas
    squaring one noisy estimate adds the estimator's variance, which the student would then
    learn to shrink instead of matching the teacher. So both halves share one normalisation:
    centring (``cka``) is linear, and the scale (Frobenius norm or mean diagonal) is taken from
    the mean of the two halves, the least noisy scale there is.
    """
    target = normalise_kernel(teacher.detach(), how)
    if how == "cka":
        first, second = _centre(first), _centre(second)
    scale_from = (first + second) / 2
    n = scale_from.shape[0]
    tiny = torch.finfo(scale_from.dtype).tiny ** 0.5
    if how == "trace":
        scale = scale_from.diagonal().mean().clamp_min(tiny)
    elif how in ("frobenius", "cka"):
        scale = torch.linalg.matrix_norm(scale_from).clamp_min(tiny) / n
    elif how == "none":
        scale = torch.ones((), dtype=scale_from.dtype)
    else:
        raise TrainingError(f"unknown NTK normalisation {how!r}; choose one of {', '.join(NORMALISATIONS)}.")
    return ((target - first / scale) * (target - second / scale)).mean()
