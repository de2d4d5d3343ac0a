from tests.service.conftest import home, trained_home  # noqa: F401 - fixtures reused here
