"""Equinox's abstract/final rule holds for layers, flows and base distributions: a class
that forgets a method fails when it is defined, not later with a silent default."""

import pytest

import invjax as ij
from invjax import layers as L


def test_a_combinator_that_omits_a_method_fails_at_class_creation():
    with pytest.raises(TypeError, match=r"does not implement initialize, initialize_inverse"):

        class Wrap(L.AbstractLayer):  # the bug of the old Invert: no initialize
            layer: L.AbstractLayer

            def forward(self, x, cond=None):
                return self.layer.forward(x, cond)

            def inverse_and_log_det(self, y, cond=None):
                return self.layer.inverse_and_log_det(y, cond)

            def backward(self, y, dy, dlogdet, cond=None):
                return self.layer.backward(y, dy, dlogdet, cond)

            def inverse_backward(self, x, dx, dlogdet, cond=None):
                return self.layer.inverse_backward(x, dx, dlogdet, cond)


def test_a_flow_missing_its_map_fails_at_class_creation():
    with pytest.raises(TypeError, match=r"does not implement .*inverse_and_log_det"):

        class Half(ij.AbstractFlow):
            base: ij.AbstractDistribution

            def forward(self, x, cond=None):
                return x, x[:, 0] * 0

            def initialize(self, x, cond=None):
                return self


def test_concrete_methods_are_not_overridden_and_final_classes_not_subclassed():
    with pytest.raises(TypeError, match=r"overrides a concrete method of AbstractFlow"):

        class Sneaky(ij.nets.AbstractNetwork):
            def log_prob(self, x, cond=None):
                return 0.0

    with pytest.raises(TypeError, match=r"ActNorm, a final class"):

        class MyActNorm(L.ActNorm):
            pass


def test_an_abstract_class_may_leave_methods_to_its_subclasses():
    class AbstractHalfway(L.AbstractBasicLayer):
        pass

    assert AbstractHalfway.__abstractmethods__ == frozenset({"forward", "inverse_and_log_det"})
