"""Graph attention network for node classification: einsum, scatter_add_, index_add_, one_hot."""

import torch
import torch.nn as nn
import torch.nn.functional as F


def add_self_loops(edge_index, num_nodes):
    loops = torch.arange(num_nodes).unsqueeze(0).repeat(2, 1)
    return torch.cat([edge_index, loops], dim=1)


def segment_softmax(scores, index, num_nodes):
    """Softmax of `scores` (E, H) over edges grouped by their target node `index` (E,)."""
    H = scores.size(1)
    idx = index.unsqueeze(-1).expand(-1, H)
    smax = torch.full((num_nodes, H), float("-inf")).scatter_reduce(
        0, idx, scores, reduce="amax", include_self=True
    )
    exp = (scores - smax.gather(0, idx)).exp()
    denom = torch.zeros(num_nodes, H).scatter_add_(0, idx, exp)
    return exp / denom.gather(0, idx).clamp_min(1e-16)


class GATLayer(nn.Module):
    def __init__(self, in_dim, out_dim, heads=2, concat=True, dropout=0.1):
        super().__init__()
        self.heads, self.out_dim, self.concat = heads, out_dim, concat
        self.lin = nn.Linear(in_dim, heads * out_dim, bias=False)
        self.att_src = nn.Parameter(torch.empty(heads, out_dim))
        self.att_dst = nn.Parameter(torch.empty(heads, out_dim))
        self.bias = nn.Parameter(torch.zeros(heads * out_dim if concat else out_dim))
        self.dropout = dropout
        nn.init.xavier_uniform_(self.lin.weight)
        nn.init.xavier_normal_(self.att_src)
        nn.init.xavier_normal_(self.att_dst)

    def forward(self, x, edge_index):
        N = x.size(0)
        src, dst = edge_index
        h = self.lin(x).view(N, self.heads, self.out_dim)
        a_src = torch.einsum("nhd,hd->nh", h, self.att_src)
        a_dst = (h * self.att_dst.unsqueeze(0)).sum(-1)
        e = F.leaky_relu(a_src[src] + a_dst[dst], negative_slope=0.2)
        alpha = segment_softmax(e, dst, N)
        alpha = F.dropout(alpha, p=self.dropout, training=self.training)
        msg = h.index_select(0, src) * alpha.unsqueeze(-1)
        out = torch.zeros(N, self.heads, self.out_dim).index_add_(0, dst, msg)
        out = out.reshape(N, -1) if self.concat else out.mean(dim=1)
        return out + self.bias


class GAT(nn.Module):
    def __init__(self, in_dim, hidden, num_classes):
        super().__init__()
        self.conv1 = GATLayer(in_dim, hidden, heads=2)
        self.conv2 = GATLayer(2 * hidden, num_classes, heads=1, concat=False)

    def forward(self, x, edge_index):
        x = F.dropout(x, p=0.2, training=self.training)
        x = F.elu(self.conv1(x, edge_index))
        x = F.dropout(x, p=0.2, training=self.training)
        return self.conv2(x, edge_index)


def make_graph(num_nodes=30, num_classes=3, generator=None):
    y = torch.randint(0, num_classes, (num_nodes,), generator=generator)
    x = (
        F.one_hot(y, num_classes).float() * 0.5
        + torch.randn(num_nodes, 6, generator=generator)[:, :num_classes]
    )
    x = torch.cat([x, torch.randn(num_nodes, 3, generator=generator)], dim=1)
    src = torch.randint(0, num_nodes, (90,), generator=generator)
    dst = torch.randint(0, num_nodes, (90,), generator=generator)
    same = y[src] == y[dst]
    keep = same | (torch.rand(90, generator=generator) < 0.3)
    edge_index = torch.stack([src[keep], dst[keep]])
    edge_index = torch.cat([edge_index, edge_index.flip(0)], dim=1)
    edge_index = torch.unique(edge_index, dim=1)
    return x, y, edge_index


def main():
    torch.manual_seed(12345)
    x, y, edge_index = make_graph(generator=torch.Generator().manual_seed(1))
    edge_index = add_self_loops(edge_index, x.size(0))
    deg = torch.bincount(edge_index[1], minlength=x.size(0))
    print("edges", edge_index.size(1), "max degree", deg.max().item())
    perm = torch.randperm(x.size(0))
    train_mask = torch.zeros(x.size(0), dtype=torch.bool)
    train_mask[perm[:20]] = True
    test_mask = ~train_mask
    model = GAT(x.size(1), 8, 3)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01, weight_decay=5e-4)
    for epoch in range(8):
        model.train()
        optimizer.zero_grad()
        out = model(x, edge_index)
        loss = F.cross_entropy(out[train_mask], y[train_mask])
        loss.backward()
        optimizer.step()
        model.eval()
        with torch.no_grad():
            pred = model(x, edge_index).argmax(dim=1)
            test_acc = (pred[test_mask] == y[test_mask]).sum().item() / int(test_mask.sum())
        print(f"epoch {epoch} loss {loss.item():.6f} test_acc {test_acc:.4f}")


if __name__ == "__main__":
    main()
