"""Request body schemas (pydantic), one package per API version."""
