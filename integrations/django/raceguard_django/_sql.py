"""Quoting of identifiers and literals for the statements this package
writes itself (trigger definitions), independent of a connection's settings."""


def quote_ident(name):
    """A PostgreSQL identifier, always quoted. Django's own quote_name() does
    not double embedded quotes, so it is not used for names a user chose."""
    name = str(name)
    if not name or "\x00" in name:
        raise ValueError("an identifier must be non-empty and hold no NUL character: %r" % (name,))
    if len(name.encode("utf-8")) > 63:
        raise ValueError(
            "identifier %r is longer than PostgreSQL's 63 bytes and would be truncated; choose a shorter name" % (name,)
        )
    return '"' + name.replace('"', '""') + '"'


def quote_literal(value):
    """A string constant in the E'' form, which means the same whatever
    standard_conforming_strings is set to."""
    value = str(value)
    if "\x00" in value:
        raise ValueError("a PostgreSQL string cannot hold a NUL character: %r" % (value,))
    return "E'" + value.replace("\\", "\\\\").replace("'", "''") + "'"


def qualified_table(db_table):
    """The quoted name of a model's table (Django's db_table is one name; it
    is looked up through the search_path, as Django itself does)."""
    return quote_ident(db_table)
