"""Helpers the tests share (fixtures, builders, fake engines, servers); test files import from here, never from each other."""
