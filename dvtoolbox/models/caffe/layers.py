"""PyTorch modules that compute what Caffe's CPU layers compute, plus Caffe's output-shape rules.

Each module takes and returns (N, C, H, W) or (N, K) float32 tensors and uses only torch operators, so it runs
on any device. Where a Caffe rule differs from PyTorch's (pooling's rounding, LRN), the module follows Caffe:

- Pooling: output size ``ceil((H + 2p - k) / s) + 1``, reduced by one when padded and the last window starts at or
  beyond ``H + p``. MAX never picks padding; AVE divides each window by its size clipped to the padded extent
  ``[-p, H + p)``. PyTorch's ``ceil_mode=True`` pooling is the same computation whenever its output size agrees and
  ``p <= k / 2``; other cases pad explicitly (-inf for MAX, zeros and a precomputed divisor map for AVE).
- LRN ACROSS_CHANNELS: ``x * (k + alpha / n * sum over n channels centred on c of x^2) ^ -beta``, zero channels
  padding both ends (a box filter along the channel axis over the squared input); WITHIN_CHANNEL:
  ``x * (1 + alpha * mean of x^2 over an n x n window) ^ -beta`` (one average pooling of the squared input;
  Caffe's within-channel LRN ignores ``k``). Across channels, the backward pass is Caffe's closed form.

Speed (the optimizer runs forward and backward to the image every step): a strided convolution of the image (few
input channels) is ``StridedInputConv2d``, with a faster backward pass to the image on the CPU; InnerProduct's
backward pass to its input skips the weight rows of zero output gradients on the CPU. Both compute the same sums
in another order. The custom backward passes are once-differentiable (no gradients of gradients).
"""

from __future__ import annotations

from typing import Dict, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dvtoolbox.models.program import is_tracing

Shape = Tuple[int, ...]


def conv_out(size: int, kernel: int, stride: int, pad: int, dilation: int = 1) -> int:
    """Caffe's (and PyTorch's) convolution output size: floor((H + 2p - d(k - 1) - 1) / s) + 1."""
    return (size + 2 * pad - (dilation * (kernel - 1) + 1)) // stride + 1


def caffe_pool_out(size: int, kernel: int, stride: int, pad: int) -> int:
    """Caffe's pooling output size: ceil((H + 2p - k) / s) + 1, minus one when padded and the last window would
    start at or beyond H + p."""
    out = -(-(size + 2 * pad - kernel) // stride) + 1
    if pad and (out - 1) * stride >= size + pad:
        out -= 1
    return out


def _torch_pool_out(size: int, kernel: int, stride: int, pad: int) -> int:
    """PyTorch's ceil_mode pooling output size (aten pooling_output_shape, dilation 1)."""
    out = (size + 2 * pad - kernel + stride - 1) // stride + 1
    if (out - 1) * stride >= size + pad:
        out -= 1
    return out


class CaffePooling(nn.Module):
    """Caffe's Pooling layer, MAX or AVE (see the module docstring). kernel/stride/pad: (h, w) pairs."""

    def __init__(self, method: str, kernel: Tuple[int, int], stride: Tuple[int, int], pad: Tuple[int, int],
                 global_pooling: bool = False):
        super().__init__()
        if method not in ("MAX", "AVE"):
            raise ValueError(f"method must be 'MAX' or 'AVE', got {method!r}")
        self.method = method
        self.kernel, self.stride, self.pad = tuple(kernel), tuple(stride), tuple(pad)
        self.global_pooling = global_pooling
        self._plans: Dict[Tuple[int, int], tuple] = {}
        self._divisors: Dict[tuple, torch.Tensor] = {}

    def extra_repr(self) -> str:
        if self.global_pooling:
            return f"{self.method}, global"
        return f"{self.method}, kernel={self.kernel}, stride={self.stride}, pad={self.pad}"

    def out_size(self, h: int, w: int) -> Tuple[int, int]:
        if self.global_pooling:
            return 1, 1
        return (caffe_pool_out(h, self.kernel[0], self.stride[0], self.pad[0]),
                caffe_pool_out(w, self.kernel[1], self.stride[1], self.pad[1]))

    def _plan(self, h: int, w: int) -> tuple:
        """(native, out_h, out_w, extra bottom pad, extra right pad) for an input of h x w."""
        (kh, kw), (sh, sw), (ph, pw) = self.kernel, self.stride, self.pad
        oh, ow = self.out_size(h, w)
        native = (2 * ph <= kh and 2 * pw <= kw and _torch_pool_out(h, kh, sh, ph) == oh
                  and _torch_pool_out(w, kw, sw, pw) == ow)
        rh = max(0, (oh - 1) * sh + kh - (h + ph))
        rw = max(0, (ow - 1) * sw + kw - (w + pw))
        plan = (native, oh, ow, rh, rw)
        self._plans[(h, w)] = plan
        return plan

    def _area_over_divisor(self, h: int, w: int, device, dtype) -> torch.Tensor:
        """(out_h, out_w): kernel area / Caffe's divisor (the window clipped to the padded input) per output."""
        key = (h, w, device, dtype)
        if key in self._divisors:
            return self._divisors[key]
        sizes = []
        for size, k, s, p, o in zip((h, w), self.kernel, self.stride, self.pad, self.out_size(h, w)):
            start = np.arange(o) * s - p
            sizes.append(np.minimum(start + k, size + p) - start)
        div = np.outer(sizes[0], sizes[1]).astype(np.float64)
        area = self.kernel[0] * self.kernel[1]
        divisor = torch.as_tensor(area / div, device=device, dtype=dtype)
        if type(divisor) is torch.Tensor:  # a trace's fake tensor is not kept for later calls
            self._divisors[key] = divisor
        return divisor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.global_pooling:
            return x.amax((-2, -1), keepdim=True) if self.method == "MAX" else x.mean((-2, -1), keepdim=True)
        h, w = x.shape[-2], x.shape[-1]
        native, oh, ow, rh, rw = self._plans.get((h, w)) or self._plan(h, w)
        (ph, pw) = self.pad
        if self.method == "MAX":
            if native:
                return F.max_pool2d(x, self.kernel, self.stride, self.pad, ceil_mode=True)
            padded = F.pad(x, (pw, rw, ph, rh), value=float("-inf"))
            return F.max_pool2d(padded, self.kernel, self.stride)[..., :oh, :ow]
        # AVE: explicit zero padding, then full windows only. PyTorch's own ceil_mode / divisor_override paths are
        # not used: on CUDA their backward pass disagrees with their forward pass (the gradient of a clipped last
        # window, divisor_override), which a test against real Caffe's gradients caught.
        means = F.avg_pool2d(F.pad(x, (pw, rw, ph, rh)), self.kernel, self.stride)[..., :oh, :ow]
        return means * self._area_over_divisor(h, w, x.device, x.dtype)


def channel_window_sum(x: torch.Tensor, n: int) -> torch.Tensor:
    """For each channel of x (N, C, H, W), the sum over the n (odd) channels centred on it, zero channels padding
    both ends: a box filter along the channel axis, as n shifted slices of the padded input (whole-tensor adds)."""
    half, channels = (n - 1) // 2, x.shape[1]
    padded = F.pad(x, (0, 0, 0, 0, half, half))
    total = padded[:, :channels]
    for offset in range(1, n):
        total = total + padded[:, offset:offset + channels]
    return total


class _CrossChannelLRN(torch.autograd.Function):
    """Caffe's ACROSS_CHANNELS LRN with Caffe's own backward pass (CrossChannelBackward):
    dx = dy * scale^-beta - 2 alpha beta / n * x * windowsum(dy * y / scale)."""

    @staticmethod
    def forward(ctx, x, n, alpha, beta, k):
        scale = channel_window_sum(x * x, n) * (alpha / n) + k
        factor = scale.pow(-beta)
        ctx.save_for_backward(x, scale, factor)
        ctx.n, ctx.coeff = n, 2.0 * alpha * beta / n
        return x * factor

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        x, scale, factor = ctx.saved_tensors
        ratio = grad * x * factor / scale  # dy * y / scale
        return grad * factor - ctx.coeff * x * channel_window_sum(ratio, ctx.n), None, None, None, None


class CaffeLRN(nn.Module):
    """Caffe's LRN layer (see the module docstring); ``local_size`` must be odd, as Caffe requires.

    ACROSS_CHANNELS uses ``channel_window_sum`` and, when a gradient is needed, Caffe's closed-form backward pass
    (GoogLeNet's conv2/norm2, 192x56x56, forward + backward on two threads: 41.8 ms with avg_pool over
    (N, 1, C, H * W) and autograd, which runs on one thread; 6.9 ms this way)."""

    def __init__(self, local_size: int, alpha: float, beta: float, k: float, region: str = "ACROSS_CHANNELS"):
        super().__init__()
        if region not in ("ACROSS_CHANNELS", "WITHIN_CHANNEL"):
            raise ValueError(f"region must be 'ACROSS_CHANNELS' or 'WITHIN_CHANNEL', got {region!r}")
        if local_size < 1 or local_size % 2 != 1:
            raise ValueError(f"local_size must be odd, got {local_size}")
        self.local_size, self.alpha, self.beta, self.k, self.region = local_size, alpha, beta, k, region

    def extra_repr(self) -> str:
        return f"{self.region}, local_size={self.local_size}, alpha={self.alpha}, beta={self.beta}, k={self.k}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = self.local_size
        if self.region == "ACROSS_CHANNELS":
            return _CrossChannelLRN.apply(x, n, self.alpha, self.beta, self.k)
        mean = F.avg_pool2d(x * x, n, stride=1, padding=(n - 1) // 2, count_include_pad=True)
        return x * (mean * self.alpha + 1.0).pow(-self.beta)


def strided_conv_input_grad(grad: torch.Tensor, weight: torch.Tensor, in_hw: Tuple[int, int], stride: int,
                            pad: Tuple[int, int]) -> torch.Tensor:
    """The gradient to the input of ``conv2d(x, weight, stride=stride, padding=pad)`` from ``grad`` (N, O, oh, ow),
    computed as the stride-1 transposed convolution it is on ``pixel_unshuffle(x, stride)``: the kernel, zero-padded
    to a multiple of the stride, is rearranged into (O, C * stride^2, kh / stride, kw / stride)."""
    s, (ph, pw), (h, w) = stride, pad, in_hw
    o, c, kh, kw = weight.shape
    oh, ow = grad.shape[-2], grad.shape[-1]
    big_kh, big_kw = -(-kh // s) * s, -(-kw // s) * s
    hp = -(-max(h + 2 * ph, (oh - 1) * s + big_kh) // s) * s  # the padded input, a multiple of the stride
    wp = -(-max(w + 2 * pw, (ow - 1) * s + big_kw) // s) * s
    ws = (F.pad(weight, (0, big_kw - kw, 0, big_kh - kh))
          .reshape(o, c, big_kh // s, s, big_kw // s, s).permute(0, 1, 3, 5, 2, 4)
          .reshape(o, c * s * s, big_kh // s, big_kw // s))
    full = F.pad(grad, (0, wp // s - big_kw // s + 1 - ow, 0, hp // s - big_kh // s + 1 - oh))
    return F.pixel_shuffle(F.conv_transpose2d(full, ws), s)[..., ph:ph + h, pw:pw + w]


class _StridedConvFastInputGrad(torch.autograd.Function):
    """F.conv2d (groups 1, dilation 1, equal strides) whose gradient to x is ``strided_conv_input_grad``."""

    @staticmethod
    def forward(ctx, x, weight, bias, stride, padding):
        ctx.save_for_backward(x, weight)
        ctx.stride, ctx.padding, ctx.has_bias = stride, padding, bias is not None
        return F.conv2d(x, weight, bias, stride, padding)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_x = strided_conv_input_grad(grad, weight, x.shape[-2:], ctx.stride[0], ctx.padding)
        if ctx.needs_input_grad[1]:
            grad_w = torch.nn.grad.conv2d_weight(x, weight.shape, grad, ctx.stride, ctx.padding)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_b = grad.sum((0, 2, 3))
        return grad_x, grad_w, grad_b, None, None


class StridedInputConv2d(nn.Conv2d):
    """nn.Conv2d for a strided convolution of an input with few channels (a net's first layer, on the image).

    The forward pass is nn.Conv2d's. On the CPU the gradient to the input is ``strided_conv_input_grad``:
    PyTorch's own CPU backward pass of a strided convolution to a 3-channel input takes 3-6 times its forward pass
    (CaffeNet's conv1 forward + backward, one thread: 13.3 ms -> 7.2 ms; two threads: 7.8 ms -> 3.8 ms).
    Needs groups 1, dilation 1 and the same stride along both axes.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.device.type != "cpu" or not (x.requires_grad and torch.is_grad_enabled()):
            return super().forward(x)
        return _StridedConvFastInputGrad.apply(x, self.weight, self.bias, self.stride, self.padding)


# Up to these fractions of non-zero entries the row-skipping path is faster than a dense product (2-core CPU, fc6 of
# CaffeNet): for one row, where reading the weights bounds both, up to 0.72; for several rows, which the dense
# product reads once for all, up to about 0.5.
SPARSE_MAX_DENSITY_ONE_ROW = 0.7
SPARSE_MAX_DENSITY_ROWS = 0.5


def sparse_rows_matmul(grad: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``grad @ weight`` for grad (M, N), weight (N, K), reading only the weight rows where grad is non-zero.

    The backward pass of a big InnerProduct to its input is bound by reading the weights (fc6: 151 MB); behind a
    ReLU, or from a single pushed unit, most of the output gradient is zero. ``embedding_bag`` sums the needed rows
    scaled by their gradients (split into several bags so that threads share the work). Dense when the gradient is
    not sparse enough to gain.
    """
    rows, cols = grad.nonzero(as_tuple=True)
    nnz, m = cols.numel(), grad.shape[0]
    if nnz > (SPARSE_MAX_DENSITY_ONE_ROW if m == 1 else SPARSE_MAX_DENSITY_ROWS) * grad.numel():
        return grad @ weight
    if nnz == 0:
        return grad.new_zeros((m, weight.shape[1]))
    values = grad[rows, cols]
    if m == 1:
        bags = max(1, min(4 * torch.get_num_threads(), nnz // 256))
        offsets = torch.arange(bags, device=grad.device) * (nnz // bags)
        return F.embedding_bag(cols, weight, offsets, mode="sum", per_sample_weights=values).sum(0, keepdim=True)
    counts = torch.bincount(rows, minlength=m)
    offsets = torch.cumsum(counts, 0) - counts
    return F.embedding_bag(cols, weight, offsets, mode="sum", per_sample_weights=values)


class _SparseLinear(torch.autograd.Function):
    """F.linear(x, weight, bias) for 2-D x on the CPU that reads only the weights it needs: the forward pass only
    the columns of non-zero inputs (rows of ``weight_t``, the transposed copy), the gradient to x only the rows of
    non-zero output gradients (``sparse_rows_matmul``). Behind a ReLU most inputs are zero."""

    @staticmethod
    def forward(ctx, x, weight, bias, weight_t):
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        y = sparse_rows_matmul(x, weight_t)
        return y + bias if bias is not None else y

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        grad_x = sparse_rows_matmul(grad, weight) if ctx.needs_input_grad[0] else None
        grad_w = grad.t() @ x if ctx.needs_input_grad[1] else None
        grad_b = grad.sum(0) if ctx.has_bias and ctx.needs_input_grad[2] else None
        return grad_x, grad_w, grad_b, None


class CaffeInnerProduct(nn.Module):
    """y = flatten(x, from axis) @ weight.T + bias. weight: (N, K) as Caffe's (non-transposed) blob.

    On the CPU a 2-D input takes ``_SparseLinear``: the same sums, reading only the weight columns of non-zero inputs
    (forward) and the weight rows of non-zero output gradients (backward), a fraction of the memory traffic behind a
    ReLU or from one pushed unit. It keeps a transposed copy of the weights for that (fc6 of CaffeNet: 151 MB more).
    """

    def __init__(self, in_features: int, out_features: int, bias: bool, axis: int = 1):
        super().__init__()
        self.axis = axis
        self.weight = nn.Parameter(torch.zeros(out_features, in_features))
        self.bias = nn.Parameter(torch.zeros(out_features)) if bias else None
        self._weight_t: Optional[Tuple[tuple, torch.Tensor]] = None

    def extra_repr(self) -> str:
        k, n = self.weight.shape[1], self.weight.shape[0]
        return f"in_features={k}, out_features={n}, bias={self.bias is not None}, axis={self.axis}"

    def weight_t(self) -> torch.Tensor:
        """(K, N) contiguous copy of the weights, remade whenever they change (load, in-place edit, device move)."""
        key = (self.weight.data_ptr(), self.weight._version, self.weight.device)
        if self._weight_t is None or self._weight_t[0] != key:
            self._weight_t = (key, self.weight.detach().t().contiguous())
        return self._weight_t[1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() > self.axis + 1:
            x = x.flatten(self.axis)
        if x.dim() == 2 and x.device.type == "cpu" and not is_tracing():  # a traced graph holds no data-dependent path
            return _SparseLinear.apply(x, self.weight, self.bias, self.weight_t())
        return F.linear(x, self.weight, self.bias)


class Concat(nn.Module):
    def __init__(self, axis: int = 1):
        super().__init__()
        self.axis = axis

    def extra_repr(self) -> str:
        return f"axis={self.axis}"

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        return torch.cat(xs, self.axis)


class Eltwise(nn.Module):
    """Caffe's Eltwise: SUM (with optional per-input coefficients), PROD or MAX of all inputs, in input order."""

    def __init__(self, operation: str, coeffs: Optional[Sequence[float]] = None):
        super().__init__()
        if operation not in ("SUM", "PROD", "MAX"):
            raise ValueError(f"operation must be 'SUM', 'PROD' or 'MAX', got {operation!r}")
        self.operation = operation
        self.coeffs = None if coeffs is None or all(c == 1.0 for c in coeffs) else tuple(float(c) for c in coeffs)

    def extra_repr(self) -> str:
        return self.operation + (f", coeffs={self.coeffs}" if self.coeffs else "")

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        if self.operation == "SUM":
            if self.coeffs is None:
                out = xs[0]
                for x in xs[1:]:
                    out = out + x
                return out
            out = xs[0] * self.coeffs[0]
            for x, c in zip(xs[1:], self.coeffs[1:]):
                out = torch.add(out, x, alpha=c)
            return out
        out = xs[0]
        for x in xs[1:]:
            out = out * x if self.operation == "PROD" else torch.maximum(out, x)
        return out


class Split(nn.Module):
    """Caffe's Split: the same blob under ``n`` names (a tuple of n references to the input)."""

    def __init__(self, n: int):
        super().__init__()
        self.n = n

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        return (x,) * self.n


class Dropout(nn.Identity):
    """Caffe's Dropout in the TEST phase: the identity (Caffe scales at training time, not at test time)."""


def reshape_shape(shape: Shape, dims: Sequence[int], axis: int, num_axes: int) -> Shape:
    """Caffe's Reshape rule: dims replace ``shape[axis : axis + num_axes]`` (num_axes -1: to the end); a 0 copies
    the input's dimension, one -1 is inferred from the count."""
    start = axis if axis >= 0 else len(shape) + axis + 1
    end = len(shape) if num_axes == -1 else start + num_axes
    if not 0 <= start <= end <= len(shape):
        raise ValueError(f"reshape axis {axis} / num_axes {num_axes} do not fit an input of shape {shape}")
    top = list(shape[:start]) + list(dims) + list(shape[end:])
    inferred = None
    for i, d in enumerate(dims):
        if d == 0:
            top[start + i] = shape[start + i]
        elif d == -1:
            if inferred is not None:
                raise ValueError(f"reshape dims {tuple(dims)} have more than one -1")
            inferred = start + i
    count = int(np.prod(shape, dtype=np.int64))
    if inferred is not None:
        known = int(np.prod([d for i, d in enumerate(top) if i != inferred], dtype=np.int64))
        if known == 0 or count % known:
            raise ValueError(f"reshape dims {tuple(dims)} do not divide an input of shape {shape}")
        top[inferred] = count // known
    if int(np.prod(top, dtype=np.int64)) != count:
        raise ValueError(f"reshape to {tuple(top)} does not keep the count of an input of shape {shape}")
    return tuple(int(d) for d in top)


class CaffeReshape(nn.Module):
    def __init__(self, dims: Sequence[int], axis: int = 0, num_axes: int = -1):
        super().__init__()
        self.dims, self.axis, self.num_axes = tuple(dims), axis, num_axes

    def extra_repr(self) -> str:
        return f"dims={self.dims}, axis={self.axis}, num_axes={self.num_axes}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(reshape_shape(tuple(x.shape), self.dims, self.axis, self.num_axes))


class CaffeBatchNorm(nn.Module):
    """Caffe's BatchNorm (no affine part: Caffe puts that in a Scale layer). With ``use_global_stats`` (Caffe's
    TEST-phase default): (x - mean) / sqrt(var + eps) with the stored statistics, already divided by Caffe's
    moving-average scale factor; without: the batch's own mean and (biased) variance."""

    def __init__(self, channels: int, eps: float, use_global_stats: bool = True):
        super().__init__()
        self.eps, self.use_global_stats = float(eps), use_global_stats
        self.register_buffer("running_mean", torch.zeros(channels))
        self.register_buffer("running_var", torch.ones(channels))

    def extra_repr(self) -> str:
        return f"{self.running_mean.numel()}, eps={self.eps}, use_global_stats={self.use_global_stats}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.use_global_stats:
            return F.batch_norm(x, self.running_mean, self.running_var, None, None, False, 0.0, self.eps)
        return F.batch_norm(x, None, None, None, None, True, 0.0, self.eps)


class CaffeScale(nn.Module):
    """Caffe's Scale: x * scale (+ bias), scale broadcast along ``axis``. With one input the scale is the learned
    ``weight`` of shape ``param_shape``; with two inputs it is the second input (and ``weight`` is None)."""

    def __init__(self, axis: int, param_shape: Optional[Shape], bias_shape: Optional[Shape], in_dims: int):
        super().__init__()
        self.axis = axis
        self.weight = nn.Parameter(torch.ones(param_shape)) if param_shape is not None else None
        self.bias = nn.Parameter(torch.zeros(bias_shape)) if bias_shape is not None else None
        self.in_dims = in_dims

    def _broadcast(self, t: torch.Tensor) -> torch.Tensor:
        trailing = self.in_dims - self.axis - t.dim()
        return t.reshape(tuple(t.shape) + (1,) * trailing) if trailing > 0 else t

    def forward(self, x: torch.Tensor, scale: Optional[torch.Tensor] = None) -> torch.Tensor:
        if scale is None:
            scale = self.weight
        out = x * self._broadcast(scale)
        if self.bias is not None:
            out = out + self._broadcast(self.bias)
        return out
