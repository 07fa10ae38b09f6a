r"""Training losses of MadNIS, estimated by importance sampling from buffered points.

For channel c with target g_c(y) = alpha_c(x) f(x) J_c J_vegas (on the flow's cube),
trainable density q_c(y) and points drawn from q_sample:

* stratified variance (MadNIS Reloaded, arXiv:2311.01548, eq. 9), the variance of the
  total estimate under Neyman allocation, relative to the integral:

  .. math::
      L = \Bigl(\sum_c \sigma_c \Big/ \sum_c |I_c|\Bigr)^2, \qquad
      \sigma_c^2 = \Bigl\langle \bigl(g_c/q_c - I_c\bigr)^2
          \frac{q_c}{q_{\rm sample}} \Bigr\rangle_{q_{\rm sample}},
      \quad I_c = \langle g_c/q_{\rm sample}\rangle;

  gradients reach the flows (through q_c) and the channel weights (through g_c);
* KL divergence (MadNIS, arXiv:2212.06172, eq. 14), per channel
  :math:`\langle \hat g_c/q_{\rm sample} (\log \hat g_c - \log q_c) \rangle`, with
  :math:`\hat g_c` = |g_c| normalised to 1 and detached, summed with weights n_c / n:
  trains the flows only (the channel weights get no gradient from it).
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["kl_divergence", "stratified_variance"]

_EPS = torch.finfo(torch.float64).eps


def stratified_variance(g: Tensor, log_q: Tensor, log_q_sample: Tensor, channel: Tensor) -> Tensor:
    """(sum_c sigma_c / sum_c |I_c|)^2; g, log_q, log_q_sample, channel: (n,)."""
    stddev_sum = g.new_zeros(())
    abs_integral = g.new_zeros(())
    for c in torch.unique(channel):
        m = channel == c
        gc, lq, lqs = g[m], log_q[m], log_q_sample[m]
        mean = torch.mean(gc * torch.exp(-lqs))
        dev = gc * torch.exp(-lq) - mean
        var = torch.mean(dev * dev * torch.exp(lq - lqs))
        stddev_sum = stddev_sum + torch.sqrt(var + _EPS)
        abs_integral = abs_integral + torch.mean(gc.detach().abs() * torch.exp(-lqs))
    return (stddev_sum / abs_integral) ** 2


def kl_divergence(g: Tensor, log_q: Tensor, log_q_sample: Tensor, channel: Tensor) -> Tensor:
    """sum_c (n_c / n) KL(g_c-hat || q_c), importance sampled; shapes as above."""
    total = g.new_zeros(())
    n = g.shape[0]
    for c in torch.unique(channel):
        m = channel == c
        gc, lq, lqs = g[m].detach().abs(), log_q[m], log_q_sample[m]
        norm = torch.mean(gc * torch.exp(-lqs))
        if not float(norm) > 0:
            continue
        gc = gc / norm
        kl = torch.mean(gc * torch.exp(-lqs) * (torch.log(gc + _EPS) - lq))
        total = total + kl * (int(m.sum()) / n)
    return total
