"""Deep Q-learning on a grid world: replay buffer, epsilon-greedy, target network, soft updates."""

import random
from collections import deque, namedtuple

import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.optim as optim

Transition = namedtuple("Transition", ("state", "action", "next_state", "reward", "done"))


class ReplayMemory:
    def __init__(self, capacity):
        self.memory = deque([], maxlen=capacity)

    def push(self, *args):
        self.memory.append(Transition(*args))

    def sample(self, batch_size):
        return random.sample(self.memory, batch_size)

    def __len__(self):
        return len(self.memory)


class GridWorld:
    """4x4 grid, start top-left, goal bottom-right, a pit in the middle."""

    def __init__(self):
        self.size = 4

    def reset(self):
        self.pos = (0, 0)
        return self.obs()

    def obs(self):
        s = torch.zeros(self.size * self.size)
        s[self.pos[0] * self.size + self.pos[1]] = 1.0
        return s

    def step(self, a):
        dr, dc = [(-1, 0), (1, 0), (0, -1), (0, 1)][a]
        r = min(max(self.pos[0] + dr, 0), self.size - 1)
        c = min(max(self.pos[1] + dc, 0), self.size - 1)
        self.pos = (r, c)
        if self.pos == (3, 3):
            return self.obs(), 1.0, True
        if self.pos == (1, 2):
            return self.obs(), -1.0, True
        return self.obs(), -0.01, False


class DQN(nn.Module):
    def __init__(self, n_observations, n_actions):
        super().__init__()
        self.layer1 = nn.Linear(n_observations, 32)
        self.layer2 = nn.Linear(32, 32)
        self.layer3 = nn.Linear(32, n_actions)

    def forward(self, x):
        x = F.relu(self.layer1(x))
        x = F.relu(self.layer2(x))
        return self.layer3(x)


def main():
    random.seed(3)
    torch.manual_seed(3)
    BATCH_SIZE, GAMMA, TAU, LR = 16, 0.95, 0.05, 1e-3
    env = GridWorld()
    policy_net = DQN(16, 4)
    target_net = DQN(16, 4)
    target_net.load_state_dict(policy_net.state_dict())
    optimizer = optim.AdamW(policy_net.parameters(), lr=LR, amsgrad=True)
    memory = ReplayMemory(500)
    steps_done = 0

    def select_action(state, eps):
        if random.random() > eps:
            with torch.no_grad():
                return policy_net(state.unsqueeze(0)).max(1).indices.view(1, 1)
        return torch.tensor([[random.randrange(4)]], dtype=torch.long)

    def optimize_model():
        if len(memory) < BATCH_SIZE:
            return None
        batch = Transition(*zip(*memory.sample(BATCH_SIZE)))
        state_batch = torch.stack(batch.state)
        action_batch = torch.cat(batch.action)
        reward_batch = torch.tensor(batch.reward)
        non_final_mask = torch.tensor([not d for d in batch.done], dtype=torch.bool)
        non_final_next_states = torch.stack(
            [s for s, d in zip(batch.next_state, batch.done) if not d]
        )
        state_action_values = policy_net(state_batch).gather(1, action_batch)
        next_state_values = torch.zeros(BATCH_SIZE)
        with torch.no_grad():
            next_state_values[non_final_mask] = target_net(non_final_next_states).max(1).values
        expected = (next_state_values * GAMMA) + reward_batch
        criterion = nn.SmoothL1Loss()
        loss = criterion(state_action_values, expected.unsqueeze(1))
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_value_(policy_net.parameters(), 100)
        optimizer.step()
        return loss.item()

    for episode in range(6):
        state = env.reset()
        total, losses = 0.0, []
        for t in range(15):  # noqa: B007 (t is the episode length after the loop)
            eps = 0.05 + 0.9 * 0.97**steps_done
            steps_done += 1
            action = select_action(state, eps)
            next_state, reward, done = env.step(action.item())
            total += reward
            memory.push(state, action, next_state, reward, done)
            state = next_state
            loss = optimize_model()
            if loss is not None:
                losses.append(loss)
            target_sd, policy_sd = target_net.state_dict(), policy_net.state_dict()
            for key in policy_sd:
                target_sd[key] = policy_sd[key] * TAU + target_sd[key] * (1 - TAU)
            target_net.load_state_dict(target_sd)
            if done:
                break
        mean_loss = sum(losses) / len(losses) if losses else float("nan")
        print(f"episode {episode} steps {t + 1} return {total:.2f} loss {mean_loss:.6f}")
    with torch.no_grad():
        q = policy_net(torch.eye(16))
        print("greedy", q.argmax(1).tolist(), f"q mean {q.mean().item():.6f}")


if __name__ == "__main__":
    main()
