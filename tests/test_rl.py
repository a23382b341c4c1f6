"""RL: the GRPO math, the stop rule during sampling, token-level rewards reaching exactly the erroring line,
smoke runs from the base model and from an SFT checkpoint, and kill -9 + resume (tests/test_sft.py)."""
import pytest
import torch

from labkit import rl


# --- the math -----------------------------------------------------------------------------------------------

def test_group_advantages_are_normalised_within_each_group():
    rewards = torch.tensor([1.0, 0.0, 0.0, 0.0, -0.3, -0.3, -0.3, -0.3, 1.0, -1.0, 1.0, -1.0])
    adv = rl.group_advantages(rewards, group_size=4).view(3, 4)
    assert adv[0].tolist() == pytest.approx([1.5, -0.5, -0.5, -0.5], abs=1e-3)   # (r - 0.25) / std 0.5
    assert adv[1].tolist() == [0.0] * 4          # all samples equal: nothing to learn (DESIGN §2.3)
    assert adv.sum(1).tolist() == pytest.approx([0.0] * 3, abs=1e-5)
    assert adv[2].tolist() == pytest.approx([0.866, -0.866, 0.866, -0.866], abs=1e-3)   # unbiased std


def test_k3_is_an_unbiased_nonnegative_kl_estimate():
    torch.manual_seed(0)
    p = torch.distributions.Categorical(logits=torch.randn(6))
    q = torch.distributions.Categorical(logits=torch.randn(6))
    x = p.sample((200_000,))
    est = rl.k3(p.log_prob(x), q.log_prob(x))
    assert (est >= 0).all()
    assert est.mean().item() == pytest.approx(torch.distributions.kl_divergence(p, q).item(), rel=0.02)
    assert rl.k3(torch.tensor([-1.2]), torch.tensor([-1.2])).item() == 0.0


def test_clipped_surrogate_stops_the_gradient_outside_the_trust_region():
    old = torch.zeros(4)
    logp = torch.tensor([0.5, 0.5, -0.5, -0.5], requires_grad=True)   # ratios e^0.5 > 1.2, e^-0.5 < 0.8
    adv = torch.tensor([1.0, -1.0, 1.0, -1.0])
    rl.clipped_surrogate(logp, old, adv, clip_eps=0.2).sum().backward()
    # A ratio already past the clip in the direction the advantage pushes gets no more push; the others do.
    assert logp.grad[0] == 0 and logp.grad[3] == 0
    assert logp.grad[1] > 0 and logp.grad[2] < 0
    # At ratio 1 it is the plain policy gradient -A * grad(logp).
    logp1 = torch.zeros(2, requires_grad=True)
    rl.clipped_surrogate(logp1, torch.zeros(2), torch.tensor([2.0, -3.0]), 0.2).sum().backward()
    assert logp1.grad.tolist() == [-2.0, 3.0]
