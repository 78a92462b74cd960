"""LeNet-5, the small CNN of the compression study, at any width.

LeCun, Bottou, Bengio & Haffner, *Gradient-based learning applied to document recognition*, Proc. IEEE 1998:
two 5x5 convolutions (6 and 16 channels) each followed by 2x2 pooling, then fully connected layers of 120 and 84
units and the classifier. As most modern ports (and as HashedNets-era CNN baselines) use it: ReLU and max pooling
in place of the scaled tanh and subsampling layers, and the first convolution padded by 2 so that 28x28 inputs
(MNIST, Fashion-MNIST) keep the paper's 32x32 geometry. At the paper's widths it has 61,706 parameters.

The layers are named (``conv1``, ``conv2``, ``fc1``, ``fc2``, ``fc3``), so ``arbify`` maps and skip lists can name
them, and the model takes the flat ``(B, C*H*W)`` images of :class:`~trainers.torch_backend.data.DeviceData`.
"""

from __future__ import annotations

from collections import OrderedDict

from torch import Tensor, nn

__all__ = ["LENET5_WIDTHS", "LeNet5"]

LENET5_WIDTHS = (6, 16, 120, 84)
"""The paper's widths: channels of ``conv1`` and ``conv2``, units of ``fc1`` and ``fc2``."""


class LeNet5(nn.Sequential):
    """LeNet-5 with ReLU and max pooling, at the paper's widths or any others.

    ``unflatten -> conv1 (5x5, padding 2) -> relu -> 2x2 max pool -> conv2 (5x5) -> relu -> 2x2 max pool ->
    flatten -> fc1 -> relu -> fc2 -> relu -> fc3``.

    Args:
        widths: ``(conv1 channels, conv2 channels, fc1 units, fc2 units)``, each >= 1; default the paper's
            ``(6, 16, 120, 84)``.
        in_shape: ``(channels, height, width)`` of an image; height and width at least 12 (after the two
            poolings the map must keep a pixel).
        num_classes: outputs of ``fc3``.

    Shape:
        - Input: ``(B, C*H*W)`` float (flat, as :class:`~trainers.torch_backend.data.DeviceData` batches) or
          ``(B, C, H, W)``.
        - Output: ``(B, num_classes)`` logits.

    Raises:
        ValueError: if a width or ``num_classes`` is below 1, ``widths`` has not 4 entries, or the image is too
            small.

    Examples::

        >>> sum(p.numel() for p in LeNet5().parameters())
        61706
        >>> LeNet5((2, 4, 30, 20)).fc1
        Linear(in_features=100, out_features=30, bias=True)
    """

    def __init__(
        self,
        widths: tuple[int, int, int, int] = LENET5_WIDTHS,
        in_shape: tuple[int, int, int] = (1, 28, 28),
        num_classes: int = 10,
    ) -> None:
        widths = tuple(widths)  # type: ignore[assignment]
        if len(widths) != 4 or any(not isinstance(w, int) or w < 1 for w in (*widths, num_classes)):
            raise ValueError(
                f"widths must be 4 ints >= 1 (conv1, conv2 channels; fc1, fc2 units) and num_classes >= 1, got "
                f"{widths!r} and {num_classes!r}; e.g. (6, 16, 120, 84)"
            )
        c, h, w = in_shape
        side = self.feature_side(in_shape)
        c1, c2, h1, h2 = widths
        super().__init__(
            OrderedDict(
                unflatten=nn.Unflatten(1, (c, h, w)),
                conv1=nn.Conv2d(c, c1, 5, padding=2),
                relu1=nn.ReLU(),
                pool1=nn.MaxPool2d(2),
                conv2=nn.Conv2d(c1, c2, 5),
                relu2=nn.ReLU(),
                pool2=nn.MaxPool2d(2),
                flatten=nn.Flatten(),
                fc1=nn.Linear(c2 * side[0] * side[1], h1),
                relu3=nn.ReLU(),
                fc2=nn.Linear(h1, h2),
                relu4=nn.ReLU(),
                fc3=nn.Linear(h2, num_classes),
            )
        )
        self.widths = widths

    @staticmethod
    def feature_side(in_shape: tuple[int, int, int]) -> tuple[int, int]:
        """Height and width of ``conv2``'s pooled output (the input of ``fc1`` is ``widths[1]`` times their product).

        Raises:
            ValueError: if the image is smaller than 12 x 12 (nothing would be left after the second pooling).
        """
        _, h, w = in_shape
        side = ((h // 2 - 4) // 2, (w // 2 - 4) // 2)  # conv1 keeps the size, pool, conv2 takes 4, pool
        if min(side) < 1:
            raise ValueError(f"in_shape {in_shape!r} is too small for LeNet-5: height and width must be >= 12")
        return side

    @classmethod
    def parameter_count(
        cls,
        widths: tuple[int, int, int, int] = LENET5_WIDTHS,
        in_shape: tuple[int, int, int] = (1, 28, 28),
        num_classes: int = 10,
    ) -> int:
        """Parameters (weights and biases) of ``LeNet5(widths, in_shape, num_classes)``, without building it.

        Raises:
            ValueError: if the image is too small (:meth:`feature_side`).
        """
        c1, c2, h1, h2 = widths
        side = cls.feature_side(in_shape)
        k = 5 * 5  # both convolutions are 5 x 5
        return (
            (in_shape[0] * k * c1 + c1)
            + (c1 * k * c2 + c2)
            + (c2 * side[0] * side[1] * h1 + h1)
            + (h1 * h2 + h2)
            + (h2 * num_classes + num_classes)
        )

    def forward(self, input: Tensor) -> Tensor:
        if input.dim() == 4:
            input = input.flatten(1)
        return super().forward(input)
