"""Text classifiers: a Kim-style CNN over pretrained frozen embeddings, and an EmbeddingBag model
with offsets (fastText style), trained with SGD + StepLR."""

import torch
import torch.nn as nn
import torch.nn.functional as F


class TextCNN(nn.Module):
    def __init__(self, pretrained, num_classes, kernel_sizes=(2, 3, 4), num_filters=6):
        super().__init__()
        self.embedding = nn.Embedding.from_pretrained(pretrained, freeze=True, padding_idx=0)
        self.convs = nn.ModuleList(
            [nn.Conv1d(pretrained.size(1), num_filters, k) for k in kernel_sizes]
        )
        self.dropout = nn.Dropout(0.3)
        self.fc = nn.Linear(num_filters * len(kernel_sizes), num_classes)

    def forward(self, x):
        emb = self.embedding(x).permute(0, 2, 1)  # B, E, T
        pooled = [
            F.max_pool1d(F.relu(conv(emb)), conv_out_len(emb, conv)).squeeze(2)
            for conv in self.convs
        ]
        return self.fc(self.dropout(torch.cat(pooled, dim=1)))


def conv_out_len(x, conv):
    return x.size(2) - conv.kernel_size[0] + 1


class FastText(nn.Module):
    def __init__(self, vocab_size, embed_dim, num_class):
        super().__init__()
        self.embedding = nn.EmbeddingBag(vocab_size, embed_dim, mode="mean")
        self.fc = nn.Linear(embed_dim, num_class)
        self.init_weights()

    def init_weights(self):
        initrange = 0.5
        self.embedding.weight.data.uniform_(-initrange, initrange)
        self.fc.weight.data.uniform_(-initrange, initrange)
        self.fc.bias.data.zero_()

    def forward(self, text, offsets):
        return self.fc(self.embedding(text, offsets))


def collate_batch(batch):
    label_list, text_list, offsets = [], [], [0]
    for label, tokens in batch:
        label_list.append(label)
        text_list.append(tokens)
        offsets.append(tokens.size(0))
    offsets = torch.tensor(offsets[:-1]).cumsum(dim=0)
    return torch.tensor(label_list, dtype=torch.int64), torch.cat(text_list), offsets


def main():
    torch.manual_seed(4)
    vocab, T = 30, 10
    docs = torch.randint(1, vocab, (40, T))
    labels = ((docs < 10).sum(1) > (docs >= 20).sum(1)).long()
    pretrained = torch.randn(vocab, 8)
    cnn = TextCNN(pretrained, 2)
    print("trainable", sum(p.numel() for p in cnn.parameters() if p.requires_grad))
    opt = torch.optim.Adam(filter(lambda p: p.requires_grad, cnn.parameters()), lr=5e-3)
    for step in range(5):
        idx = torch.randperm(40)[:16]
        loss = F.cross_entropy(cnn(docs[idx]), labels[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        print(f"cnn step {step} loss {loss.item():.6f}")

    model = FastText(vocab, 12, 2)
    lengths = torch.randint(3, T + 1, (40,))
    batch = [(int(labels[i]), docs[i, : int(lengths[i])]) for i in range(40)]
    criterion = torch.nn.CrossEntropyLoss()
    optimizer = torch.optim.SGD(model.parameters(), lr=2.0)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, 1.0, gamma=0.5)
    for epoch in range(3):
        model.train()
        total_acc, total_count = 0, 0
        for i in range(0, 40, 10):
            label, text, offsets = collate_batch(batch[i : i + 10])
            optimizer.zero_grad()
            predicted_label = model(text, offsets)
            loss = criterion(predicted_label, label)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 0.1)
            optimizer.step()
            total_acc += (predicted_label.argmax(1) == label).sum().item()
            total_count += label.size(0)
            print(f"bag epoch {epoch} batch {i // 10} loss {loss.item():.6f}")
        scheduler.step()
        print(
            f"bag epoch {epoch} acc {total_acc / total_count:.4f} lr {scheduler.get_last_lr()[0]}"
        )


if __name__ == "__main__":
    main()
