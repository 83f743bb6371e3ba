from _tiny_shapes import one_thread_quiet, tiny_shapes  # noqa: F401 - this folder's fixtures
