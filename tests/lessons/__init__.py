"""The lessons suite: a package, so its conftest is `lessons.conftest`, not a second `conftest`."""
