pytest_plugins = ["orchestra.testing"]
