"""REINFORCE with a baseline on a toy corridor environment written in torch."""

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.distributions import Categorical


class Corridor:
    """Walk left/right on a line of `n` cells; reward 1 at the right end, small step cost."""

    def __init__(self, n=6, max_steps=12, generator=None):
        self.n, self.max_steps, self.gen = n, max_steps, generator

    def reset(self):
        self.pos = int(torch.randint(0, self.n // 2, (1,), generator=self.gen))
        self.t = 0
        return self._obs()

    def _obs(self):
        return F.one_hot(torch.tensor(self.pos), self.n).float()

    def step(self, action):
        self.pos = max(0, min(self.n - 1, self.pos + (1 if action == 1 else -1)))
        self.t += 1
        done = self.pos == self.n - 1 or self.t >= self.max_steps
        reward = 1.0 if self.pos == self.n - 1 else -0.05
        return self._obs(), reward, done


class Policy(nn.Module):
    def __init__(self, n_obs, n_actions, hidden=16):
        super().__init__()
        self.affine1 = nn.Linear(n_obs, hidden)
        self.dropout = nn.Dropout(p=0.2)
        self.action_head = nn.Linear(hidden, n_actions)
        self.value_head = nn.Linear(hidden, 1)
        self.saved_log_probs, self.values, self.entropies, self.rewards = [], [], [], []

    def forward(self, x):
        x = F.relu(self.dropout(self.affine1(x)))
        return F.softmax(self.action_head(x), dim=-1), self.value_head(x)


def select_action(policy, state):
    probs, value = policy(state.unsqueeze(0))
    m = Categorical(probs)
    action = m.sample()
    policy.saved_log_probs.append(m.log_prob(action))
    policy.values.append(value.squeeze())
    policy.entropies.append(m.entropy())
    return action.item()


def finish_episode(policy, optimizer, gamma=0.99, eps=1e-8):
    R = 0.0
    returns = []
    for r in policy.rewards[::-1]:
        R = r + gamma * R
        returns.insert(0, R)
    returns = torch.tensor(returns)
    if len(returns) > 1:
        returns = (returns - returns.mean()) / (returns.std() + eps)
    values = torch.stack(policy.values)
    advantage = returns - values.detach()
    log_probs = torch.cat(policy.saved_log_probs)
    policy_loss = -(log_probs * advantage).sum()
    value_loss = F.smooth_l1_loss(values, returns)
    entropy = torch.cat(policy.entropies).mean()
    loss = policy_loss + 0.5 * value_loss - 0.01 * entropy
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    del policy.rewards[:], policy.saved_log_probs[:], policy.values[:], policy.entropies[:]
    return loss.item()


def main():
    torch.manual_seed(543)
    env = Corridor(generator=torch.Generator().manual_seed(0))
    policy = Policy(6, 2)
    optimizer = torch.optim.RMSprop(policy.parameters(), lr=1e-2, alpha=0.99, eps=1e-5)
    running_reward = 0.0
    for episode in range(8):
        state, ep_reward = env.reset(), 0.0
        done = False
        while not done:
            action = select_action(policy, state)
            state, reward, done = env.step(action)
            policy.rewards.append(reward)
            ep_reward += reward
        running_reward = 0.05 * ep_reward + 0.95 * running_reward
        loss = finish_episode(policy, optimizer)
        print(
            f"episode {episode} loss {loss:.6f} reward {ep_reward:.2f} running {running_reward:.4f}"
        )
    with torch.no_grad():
        probs, _ = policy.eval()(torch.eye(6))
        dist = Categorical(probs=probs)
        print(
            "greedy", dist.probs.argmax(-1).tolist(), f"entropy {dist.entropy().mean().item():.6f}"
        )


if __name__ == "__main__":
    main()
