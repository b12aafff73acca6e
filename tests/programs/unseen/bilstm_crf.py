"""BiLSTM-CRF sequence tagger: forward algorithm with logsumexp, Viterbi decoding, masks."""

import torch
import torch.nn as nn

START, STOP = 3, 4  # tag ids of the special tags


class BiLSTM_CRF(nn.Module):
    def __init__(self, vocab_size, tagset_size, embedding_dim=8, hidden_dim=12):
        super().__init__()
        self.tagset_size = tagset_size
        self.word_embeds = nn.Embedding(vocab_size, embedding_dim)
        self.lstm = nn.LSTM(
            embedding_dim, hidden_dim // 2, num_layers=1, bidirectional=True, batch_first=True
        )
        self.hidden2tag = nn.Linear(hidden_dim, tagset_size)
        self.transitions = nn.Parameter(torch.randn(tagset_size, tagset_size))
        with torch.no_grad():
            self.transitions[START, :] = -10000.0
            self.transitions[:, STOP] = -10000.0

    def _features(self, sentences):
        out, _ = self.lstm(self.word_embeds(sentences))
        return self.hidden2tag(out)  # B, T, K

    def _forward_alg(self, feats, mask):
        B, T, K = feats.shape
        alpha = torch.full((B, K), -10000.0)
        alpha[:, START] = 0.0
        for t in range(T):
            # alpha[b, next] = logsumexp_prev alpha[b, prev] + trans[next, prev] + feat[b, t, next]
            scores = alpha.unsqueeze(1) + self.transitions.unsqueeze(0) + feats[:, t].unsqueeze(2)
            new_alpha = torch.logsumexp(scores, dim=2)
            m = mask[:, t].unsqueeze(1)
            alpha = torch.where(m, new_alpha, alpha)
        return torch.logsumexp(alpha + self.transitions[STOP].unsqueeze(0), dim=1)

    def _score_sentence(self, feats, tags, mask):
        B, T, _ = feats.shape
        score = torch.zeros(B)
        prev = torch.full((B,), START, dtype=torch.long)
        for t in range(T):
            emit = feats[:, t].gather(1, tags[:, t : t + 1]).squeeze(1)
            trans = self.transitions[tags[:, t], prev]
            score = score + (emit + trans) * mask[:, t]
            prev = torch.where(mask[:, t], tags[:, t], prev)
        return score + self.transitions[STOP, prev]

    def neg_log_likelihood(self, sentences, tags, mask):
        feats = self._features(sentences)
        return (self._forward_alg(feats, mask) - self._score_sentence(feats, tags, mask)).mean()

    @torch.no_grad()
    def viterbi_decode(self, sentence):
        feats = self._features(sentence.unsqueeze(0))[0]
        backpointers = []
        fv = torch.full((self.tagset_size,), -10000.0)
        fv[START] = 0
        for feat in feats:
            next_tag_var = fv.unsqueeze(0) + self.transitions
            best_ids = torch.argmax(next_tag_var, dim=1)
            viterbivars = next_tag_var.gather(1, best_ids.unsqueeze(1)).squeeze(1)
            fv = viterbivars + feat
            backpointers.append(best_ids)
        terminal = fv + self.transitions[STOP]
        best = int(terminal.argmax())
        path_score = terminal[best]
        path = [best]
        for bptrs in reversed(backpointers):
            best = int(bptrs[best])
            path.append(best)
        assert path.pop() == START
        path.reverse()
        return path_score, path


def main():
    torch.manual_seed(1)
    vocab, n = 15, 10
    lengths = torch.randint(3, 8, (n,))
    T = int(lengths.max())
    sentences = torch.randint(1, vocab, (n, T))
    mask = torch.arange(T).unsqueeze(0) < lengths.unsqueeze(1)
    sentences = sentences.masked_fill(~mask, 0)
    tags = (sentences % 3).masked_fill(~mask, 0)  # tags 0..2 from the word
    model = BiLSTM_CRF(vocab, 5)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, weight_decay=1e-4)
    for epoch in range(6):
        model.zero_grad()
        loss = model.neg_log_likelihood(sentences, tags, mask)
        loss.backward()
        optimizer.step()
        print(f"epoch {epoch} loss {loss.item():.6f}")
    score, path = model.viterbi_decode(sentences[0, : int(lengths[0])])
    print(
        f"viterbi score {score.item():.6f} path {path} gold {tags[0, : int(lengths[0])].tolist()}"
    )


if __name__ == "__main__":
    main()
