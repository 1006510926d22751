"""AbstractComposite: a layer defined by an assembly of other layers (its ``body``)."""


import equinox as eqx

from .._layer import AbstractLayer


class AbstractComposite(AbstractLayer):
    """Base for layers that are an assembly of layers: every method delegates to ``body``.

    A subclass builds ``body`` (a :class:`Chain`, a :class:`Stack`, ...) in its constructor
    and gets forward, inverse, both backward passes and both initialisations from it, so it
    never writes a backward of its own.
    """

    body: eqx.AbstractVar[AbstractLayer]

    def _with(self, body):
        return eqx.tree_at(lambda s: s.body, self, body)

    def forward(self, x, cond=None):
        return self.body.forward(x, cond)

    def inverse_and_log_det(self, y, cond=None):
        return self.body.inverse_and_log_det(y, cond)

    def _wrap(self, result):
        value, dvalue, dbody, dcond = result
        return value, dvalue, self._with(dbody), dcond

    def backward(self, y, dy, dlogdet, cond=None):
        return self._wrap(self.body.backward(y, dy, dlogdet, cond))

    def inverse_backward(self, x, dx, dlogdet, cond=None):
        return self._wrap(self.body.inverse_backward(x, dx, dlogdet, cond))

    def initialize(self, x, cond=None):
        body, y = self.body.initialize(x, cond)
        return self._with(body), y

    def initialize_inverse(self, y, cond=None):
        body, x = self.body.initialize_inverse(y, cond)
        return self._with(body), x
