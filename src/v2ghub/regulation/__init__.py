"""Frequency regulation: regulation signals, grid frequency traces and performance scores.

Sign convention: a regulation signal of +1 asks the fleet to move its power by +1 times the
committed capacity (more charging or less discharging), -1 by -1 times it; see
:mod:`v2ghub.regulation.signals`.
"""
