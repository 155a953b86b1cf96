"""The GCN network the `gcn` recipe converts, in PyTorch (the reference for tests
and the demo model in models/).

Peng et al., "Large Kernel Matters" (2017), as the commonly used PyTorch code writes
it (ZijunDeng/pytorch-semantic-segmentation, models/gcn.py): a ResNet backbone, a
GCN block + Boundary Refinement on each of layer1..layer4, a top-down path that
upsamples (bilinear, align_corners=True, i.e. F.upsample_bilinear), adds and
refines, then two more x2 upsamplings (to the stem's map, then to the input) with
a BR after each. The backbone is any torchvision-style ResNet (keys conv1, bn1,
layer1..layer4; torchvision.models.resnet* or SmallResNet below).

State-dict layout (docs/converter.md, recipe `gcn`):
    backbone.*                       the ResNet
    gcm{1..4}.conv_{l1,l2,r1,r2}.*   GCN blocks on layer4, layer3, layer2, layer1
    brm{1..9}.conv{1,2}.*            Boundary Refinement blocks
"""
import torch
import torch.nn as nn
import torch.nn.functional as F
from torchvision.models.resnet import Bottleneck


class GlobalConv(nn.Module):
    """GCN block: conv(1xk)(conv(kx1)(x)) + conv(kx1)(conv(1xk)(x)); bias, no BN, no activation."""

    def __init__(self, cin, cout, k):
        super().__init__()
        assert k % 2 == 1
        p = k // 2
        self.conv_l1 = nn.Conv2d(cin, cout, (k, 1), padding=(p, 0))
        self.conv_l2 = nn.Conv2d(cout, cout, (1, k), padding=(0, p))
        self.conv_r1 = nn.Conv2d(cin, cout, (1, k), padding=(0, p))
        self.conv_r2 = nn.Conv2d(cout, cout, (k, 1), padding=(p, 0))

    def forward(self, x):
        return self.conv_l2(self.conv_l1(x)) + self.conv_r2(self.conv_r1(x))


class BoundaryRefine(nn.Module):
    """BR block: x + conv3x3(relu(conv3x3(x)))."""

    def __init__(self, c):
        super().__init__()
        self.conv1 = nn.Conv2d(c, c, 3, padding=1)
        self.relu = nn.ReLU(inplace=False)
        self.conv2 = nn.Conv2d(c, c, 3, padding=1)

    def forward(self, x):
        return x + self.conv2(self.relu(self.conv1(x)))


def up(x, like, align_corners=True):
    return F.interpolate(x, size=like.shape[-2:], mode="bilinear", align_corners=align_corners)


class GCNNet(nn.Module):
    def __init__(self, backbone, channels, num_classes, k=15, align_corners=True):
        """backbone: a ResNet (conv1, bn1, relu, maxpool, layer1..layer4); channels: the
        widths of layer1..layer4; k: GCN kernel size (one int, or four for gcm1..gcm4)."""
        super().__init__()
        ks = [k] * 4 if isinstance(k, int) else list(k)
        self.backbone = backbone
        self.align_corners = align_corners
        for i in range(4):  # gcm1 on layer4 ... gcm4 on layer1
            setattr(self, "gcm%d" % (i + 1), GlobalConv(channels[3 - i], num_classes, ks[i]))
        for i in range(9):
            setattr(self, "brm%d" % (i + 1), BoundaryRefine(num_classes))

    def forward(self, x):
        b, ac = self.backbone, self.align_corners
        fm0 = b.relu(b.bn1(b.conv1(x)))
        fm1 = b.layer1(b.maxpool(fm0))
        fm2 = b.layer2(fm1)
        fm3 = b.layer3(fm2)
        fm4 = b.layer4(fm3)
        g1 = self.brm1(self.gcm1(fm4))
        g2 = self.brm2(self.gcm2(fm3))
        g3 = self.brm3(self.gcm3(fm2))
        g4 = self.brm4(self.gcm4(fm1))
        fs1 = self.brm5(up(g1, fm3, ac) + g2)
        fs2 = self.brm6(up(fs1, fm2, ac) + g3)
        fs3 = self.brm7(up(fs2, fm1, ac) + g4)
        fs4 = self.brm8(up(fs3, fm0, ac))
        return self.brm9(up(fs4, x, ac))


class SmallResNet(nn.Module):
    """A torchvision-layout ResNet of Bottleneck blocks with free widths (torchvision's
    ResNet fixes them at 64..2048): same keys (conv1, bn1, layer{1..4}.{i}.conv1..3,
    bn1..3, downsample.0/1), same stride/dilation rules (replace_stride_with_dilation;
    the first block of a dilated stage keeps the previous dilation)."""

    def __init__(self, planes=(16, 32, 64, 128), blocks=(1, 1, 1, 1), stem=16,
                 replace_stride_with_dilation=(False, False, False)):
        super().__init__()
        self.conv1 = nn.Conv2d(3, stem, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(stem)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.inplanes, self.dilation = stem, 1
        dil = (False,) + tuple(replace_stride_with_dilation)
        for i in range(4):
            setattr(self, "layer%d" % (i + 1), self._make_layer(planes[i], blocks[i], 1 if i == 0 else 2, dil[i]))
        self.channels = [p * Bottleneck.expansion for p in planes]

    def _make_layer(self, planes, blocks, stride, dilate):
        previous_dilation = self.dilation
        if dilate:
            self.dilation *= stride
            stride = 1
        downsample = None
        if stride != 1 or self.inplanes != planes * Bottleneck.expansion:
            downsample = nn.Sequential(nn.Conv2d(self.inplanes, planes * Bottleneck.expansion, 1, stride=stride, bias=False),
                                       nn.BatchNorm2d(planes * Bottleneck.expansion))
        layers = [Bottleneck(self.inplanes, planes, stride, downsample, dilation=previous_dilation)]
        self.inplanes = planes * Bottleneck.expansion
        for _ in range(1, blocks):
            layers.append(Bottleneck(self.inplanes, planes, dilation=self.dilation))
        return nn.Sequential(*layers)


def torchvision_backbone(name, **kw):
    """A torchvision ResNet (no pretrained weights) and its layer widths."""
    import torchvision
    net = getattr(torchvision.models, name)(weights=None, **kw)
    net.fc = nn.Identity()  # not used by the network; keeps the state dict to what the recipe reads
    widths = [getattr(net, "layer%d" % i)[-1].conv3.out_channels if hasattr(getattr(net, "layer%d" % i)[-1], "conv3")
              else getattr(net, "layer%d" % i)[-1].conv2.out_channels for i in range(1, 5)]
    return net, widths
