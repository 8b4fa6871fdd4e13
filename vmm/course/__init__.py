"""The course: the labs in ``labs/``, the skeletons cut from their solutions,
their checks and a student's progress.
"""
