"""Single-stage detector head on synthetic boxes: anchors from meshgrid, IoU matching with
max/argmax, box-delta encoding, focal loss, smooth L1, and a plain non-maximum suppression."""

import torch
import torch.nn as nn
import torch.nn.functional as F


def make_anchors(fmap, stride, sizes):
    ys, xs = torch.meshgrid(torch.arange(fmap), torch.arange(fmap), indexing="ij")
    centers = torch.stack([(xs + 0.5) * stride, (ys + 0.5) * stride], -1).reshape(-1, 1, 2)
    wh = torch.tensor(sizes, dtype=torch.float32).view(1, -1, 1).expand(-1, -1, 2)
    boxes = torch.cat([centers - wh / 2, centers + wh / 2], -1)  # (HW, A, 4) x1y1x2y2
    return boxes.reshape(-1, 4)


def box_iou(a, b):
    area_a = (a[:, 2] - a[:, 0]).clamp(min=0) * (a[:, 3] - a[:, 1]).clamp(min=0)
    area_b = (b[:, 2] - b[:, 0]).clamp(min=0) * (b[:, 3] - b[:, 1]).clamp(min=0)
    lt = torch.max(a[:, None, :2], b[None, :, :2])
    rb = torch.min(a[:, None, 2:], b[None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    return inter / (area_a[:, None] + area_b[None, :] - inter)


def encode(anchors, gt):
    aw, ah = anchors[:, 2] - anchors[:, 0], anchors[:, 3] - anchors[:, 1]
    ax, ay = anchors[:, 0] + 0.5 * aw, anchors[:, 1] + 0.5 * ah
    gw, gh = gt[:, 2] - gt[:, 0], gt[:, 3] - gt[:, 1]
    gx, gy = gt[:, 0] + 0.5 * gw, gt[:, 1] + 0.5 * gh
    return torch.stack([(gx - ax) / aw, (gy - ay) / ah, torch.log(gw / aw), torch.log(gh / ah)], 1)


def sigmoid_focal_loss(logits, targets, alpha=0.25, gamma=2.0):
    p = torch.sigmoid(logits)
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = p * targets + (1 - p) * (1 - targets)
    loss = ce * ((1 - p_t) ** gamma)
    alpha_t = alpha * targets + (1 - alpha) * (1 - targets)
    return (alpha_t * loss).sum()


def nms(boxes, scores, thresh):
    order = scores.argsort(descending=True)
    keep = []
    while order.numel() > 0:
        i = order[0]
        keep.append(int(i))
        if order.numel() == 1:
            break
        ious = box_iou(boxes[i].unsqueeze(0), boxes[order[1:]]).squeeze(0)
        order = order[1:][ious <= thresh]
    return torch.tensor(keep, dtype=torch.long)


class Head(nn.Module):
    def __init__(self, num_anchors=2, num_classes=2):
        super().__init__()
        self.backbone = nn.Sequential(
            nn.Conv2d(3, 8, 3, 2, 1),
            nn.ReLU(),
            nn.Conv2d(8, 16, 3, 2, 1),
            nn.ReLU(),
            nn.AdaptiveMaxPool2d(4),
        )
        self.cls = nn.Conv2d(16, num_anchors * num_classes, 3, padding=1)
        self.reg = nn.Conv2d(16, num_anchors * 4, 3, padding=1)
        nn.init.constant_(self.cls.bias, -2.0)
        self.num_classes = num_classes

    def forward(self, x):
        f = self.backbone(x)
        n = x.size(0)
        cls = self.cls(f).permute(0, 2, 3, 1).reshape(n, -1, self.num_classes)
        reg = self.reg(f).permute(0, 2, 3, 1).reshape(n, -1, 4)
        return cls, reg


def main():
    torch.manual_seed(101)
    anchors = make_anchors(4, 8, [8.0, 16.0])
    images = torch.randn(4, 3, 32, 32)
    gt_boxes = [
        torch.tensor([[2.0, 3.0, 14.0, 12.0], [18.0, 16.0, 30.0, 31.0]]),
        torch.tensor([[5.0, 5.0, 20.0, 22.0]]),
        torch.tensor([[0.0, 10.0, 9.0, 20.0], [12.0, 0.0, 28.0, 14.0]]),
        torch.tensor([[8.0, 8.0, 24.0, 24.0]]),
    ]
    gt_labels = [torch.tensor([0, 1]), torch.tensor([1]), torch.tensor([0, 0]), torch.tensor([1])]
    model = Head()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=[3, 5], gamma=0.1)
    for step in range(6):
        cls, reg = model(images)
        cls_loss, reg_loss, num_pos = 0.0, 0.0, 0
        for i in range(images.size(0)):
            iou = box_iou(anchors, gt_boxes[i])
            best_iou, best_gt = iou.max(dim=1)
            best_iou[iou.argmax(dim=0)] = 1.0  # every gt gets its best anchor
            pos = best_iou >= 0.4
            target = torch.zeros_like(cls[i])
            target[pos, gt_labels[i][best_gt[pos]]] = 1.0
            cls_loss = cls_loss + sigmoid_focal_loss(cls[i], target)
            deltas = encode(anchors[pos], gt_boxes[i][best_gt[pos]])
            reg_loss = reg_loss + F.smooth_l1_loss(reg[i][pos], deltas, beta=1 / 9, reduction="sum")
            num_pos += int(pos.sum())
        loss = (cls_loss + reg_loss) / max(1, num_pos)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        print(f"step {step} loss {loss.item():.6f} pos {num_pos}")
    with torch.no_grad():
        cls, reg = model(images[:1])
        scores, labels = cls[0].sigmoid().max(1)
        keep = nms(anchors, scores, 0.3)
        print("kept", keep.tolist()[:5], f"top score {scores[keep[0]].item():.6f}")


if __name__ == "__main__":
    main()
