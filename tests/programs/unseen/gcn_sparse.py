"""Kipf & Welling GCN with a sparse normalised adjacency (sparse_coo_tensor, torch.sparse.mm)."""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F


class GraphConvolution(nn.Module):
    def __init__(self, in_features, out_features):
        super().__init__()
        self.weight = nn.Parameter(torch.FloatTensor(in_features, out_features))
        self.bias = nn.Parameter(torch.FloatTensor(out_features))
        stdv = 1.0 / math.sqrt(self.weight.size(1))
        self.weight.data.uniform_(-stdv, stdv)
        self.bias.data.uniform_(-stdv, stdv)

    def forward(self, input, adj):
        support = torch.mm(input, self.weight)
        return torch.sparse.mm(adj, support) + self.bias


class GCN(nn.Module):
    def __init__(self, nfeat, nhid, nclass, dropout=0.5):
        super().__init__()
        self.gc1 = GraphConvolution(nfeat, nhid)
        self.gc2 = GraphConvolution(nhid, nclass)
        self.dropout = dropout

    def forward(self, x, adj):
        x = F.relu(self.gc1(x, adj))
        x = F.dropout(x, self.dropout, training=self.training)
        return F.log_softmax(self.gc2(x, adj), dim=1)


def normalized_adjacency(edges, n):
    edges = torch.cat([edges, edges.flip(0), torch.arange(n).repeat(2, 1)], dim=1)
    values = torch.ones(edges.size(1))
    adj = torch.sparse_coo_tensor(edges, values, (n, n)).coalesce()
    deg = torch.sparse.sum(adj, dim=1).to_dense()
    d_inv_sqrt = deg.pow(-0.5)
    idx = adj.indices()
    vals = d_inv_sqrt[idx[0]] * adj.values() * d_inv_sqrt[idx[1]]
    return torch.sparse_coo_tensor(idx, vals, (n, n))


def main():
    torch.manual_seed(16)
    n = 24
    labels = torch.randint(0, 3, (n,))
    features = F.one_hot(labels, 3).float() + 0.8 * torch.randn(n, 3)
    features = torch.cat([features, torch.rand(n, 5)], 1)
    src = torch.randint(0, n, (40,))
    dst = torch.where(torch.rand(40) < 0.7, src.roll(1), torch.randint(0, n, (40,)))
    adj = normalized_adjacency(torch.stack([src, dst]), n)
    model = GCN(8, 12, 3)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01, weight_decay=5e-4)
    idx_train = torch.arange(0, 16)
    for epoch in range(6):
        model.train()
        optimizer.zero_grad()
        output = model(features, adj)
        loss_train = F.nll_loss(output[idx_train], labels[idx_train])
        acc = (output[idx_train].max(1)[1] == labels[idx_train]).double().mean()
        loss_train.backward()
        optimizer.step()
        print(f"epoch {epoch} loss {loss_train.item():.6f} acc {acc.item():.4f}")


if __name__ == "__main__":
    main()
