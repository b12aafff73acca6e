"""y = x² as custom gates: a right one and one whose backward forgets the factor 2 (for the tests
that must name, draw or explain a wrong gate)."""

import chainrule as cr


class GoodSquare(cr.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x * x

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return 2 * g * x


class BadSquare(cr.autograd.Function):
    """y = x²  with a wrong backward (forgets the factor 2)."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x * x

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g * x
