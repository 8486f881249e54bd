#!/usr/bin/env python3
"""Runs every SQL example of README.md and docs/*.md, so the docs cannot
drift from the code.

The convention the pages follow (docs/internals.md, "How the documentation
is tested"):
- every ```sql fence is run, in page order, by psql (each fence its own
  session, continuing after an error) in a database made for that page,
  where only CREATE EXTENSION raceguard has been run;
- a ```text fence right after an ```sql fence (blank lines between at most)
  is what psql prints for it, exactly; an ```sql fence without one must
  print no ERROR or WARNING;
- anything else (shell, ORM code, two-session races, signatures) is in a
  fence with another info string and is not run here.
It also checks that every relative link of the pages points at a file of
the repository, that every SQL object of the extension is named on a page
of docs/, and that the README stays a landing page (at most 250 lines).

Runs against the cluster in PGHOST/PGPORT (test/suites.sh runs it inside
the throwaway cluster); creates and drops one database per page.
"""
import contextlib
import os
import re
import subprocess
import sys

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
README_MAX_LINES = 250
FENCE = re.compile(r"^```(\S*)")
LINK = re.compile(r"\]\(([^)#\s]*)(#[^)\s]*)?\)")


def fences(text):
    """Yields (info string, line number of the opening fence, body, index of
    the closing fence's line)."""
    lines = text.split("\n")
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        info, start, body = m.group(1), i + 1, []
        i += 1
        while i < len(lines) and not lines[i].startswith("```"):
            body.append(lines[i])
            i += 1
        yield info, start, "\n".join(body) + "\n", i
        i += 1  # past the closing fence


def paired_examples(text):
    """The sql fences, each with the text fence that follows it (or None)."""
    blocks = list(fences(text))
    lines = text.split("\n")
    examples = []
    for n, (info, start, body, end) in enumerate(blocks):
        if info != "sql":
            continue
        expected = None
        if n + 1 < len(blocks) and blocks[n + 1][0] == "text":
            # Only blank lines between this fence's end and the next fence.
            next_start = blocks[n + 1][1] - 1  # line index of the next opening fence
            if all(not lines[k].strip() for k in range(end + 1, next_start)):
                expected = blocks[n + 1][2]
        examples.append((start, body, expected))
    return examples


def psql(database, sql):
    args = ["psql", "-X", "-q", "-d", database, "-v", "VERBOSITY=default"]
    done = subprocess.run(args, input=sql, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, env=dict(os.environ, PGOPTIONS="-c client_min_messages=notice"))
    return done.returncode, done.stdout


def normalized(output):
    return "\n".join(line.rstrip() for line in output.strip("\n").split("\n"))


def role_names(database):
    code, out = psql(database, "\\pset tuples_only on\n\\pset format unaligned\nSELECT rolname FROM pg_roles;")
    if code != 0:
        raise RuntimeError(f"cannot list the roles:\n{out}")
    return set(out.split())


@contextlib.contextmanager
def database_with_extension(database):
    """A new database where only CREATE EXTENSION raceguard has run; dropped
    after, with the roles its examples created (roles are cluster-wide: a
    second run would find them)."""
    subprocess.run(["dropdb", "--if-exists", database], check=True, stderr=subprocess.DEVNULL)
    subprocess.run(["createdb", database], check=True)
    roles_before = role_names(database)
    try:
        code, out = psql(database, "CREATE EXTENSION raceguard;")
        if code != 0:
            raise RuntimeError(f"CREATE EXTENSION raceguard failed in {database}:\n{out}")
        yield database
    finally:
        created = sorted(role_names(database) - roles_before)
        for role in created:
            psql(database, f'DROP OWNED BY "{role}";')
        subprocess.run(["dropdb", "--if-exists", database], stderr=subprocess.DEVNULL)
        for role in created:
            code, out = psql("postgres", f'DROP ROLE "{role}";')
            if code != 0:
                raise RuntimeError(f"cannot drop role {role}, made by the examples of {database}:\n{out}")


def run_page(path, failures):
    text = open(path, encoding="utf-8").read()
    examples = paired_examples(text)
    if not examples:
        return 0
    page = os.path.relpath(path, ROOT)
    with database_with_extension("raceguard_docs_" + re.sub(r"[^a-z0-9]+", "_", page.lower())) as database:
        for line, sql, expected in examples:
            code, out = psql(database, sql)
            where = f"{page}:{line}"
            if SHOW:
                print(f"=== {where}\n{out}")
            if expected is not None:
                if normalized(out) != normalized(expected):
                    failures.append(f"{where}: psql printed\n{out}\n--- the page shows\n{expected}")
            elif code != 0 or re.search(r"^(ERROR|WARNING|FATAL|psql:)", out, re.M):
                failures.append(f"{where}: failed, and the page shows no output for it:\n{out}")
    return len(examples)


def prose_of(text):
    """The page without its fences: links and headings inside them are code."""
    return re.sub(r"^```.*?^```", "", text, flags=re.M | re.S)


def anchors(path):
    """The anchors of a page's headings, as GitHub makes them."""
    found = set()
    for heading in re.findall(r"^#+ +(.*)$", prose_of(open(path, encoding="utf-8").read()), re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        base, n = slug, 1
        while slug in found:
            slug, n = f"{base}-{n}", n + 1
        found.add(slug)
    return found


def check_links(path, failures):
    prose = prose_of(open(path, encoding="utf-8").read())
    for m in LINK.finditer(prose):
        target, fragment = m.group(1), m.group(2)
        if re.match(r"^[a-z]+:", target or ""):
            continue
        resolved = os.path.normpath(os.path.join(os.path.dirname(path), target)) if target else path
        if not os.path.exists(resolved):
            failures.append(f"{os.path.relpath(path, ROOT)}: link to {target}, which does not exist")
        elif fragment and resolved.endswith(".md") and fragment[1:] not in anchors(resolved):
            failures.append(f"{os.path.relpath(path, ROOT)}: link to {target}{fragment}, a heading that does not exist")


def check_objects_named(pages, failures):
    """Every member of the extension is named on a page of docs/."""
    with database_with_extension("raceguard_docs_objects") as database:
        names = subprocess.run(
            ["psql", "-X", "-qAt", "-d", database, "-c",
             "SELECT DISTINCT coalesce(p.proname, c.relname, e.evtname) FROM pg_depend d"
             " LEFT JOIN pg_proc p ON d.classid = 'pg_proc'::regclass AND p.oid = d.objid"
             " LEFT JOIN pg_class c ON d.classid = 'pg_class'::regclass AND c.oid = d.objid"
             " LEFT JOIN pg_event_trigger e ON d.classid = 'pg_event_trigger'::regclass AND e.oid = d.objid"
             " WHERE d.refclassid = 'pg_extension'::regclass AND d.deptype = 'e'"
             " AND d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'raceguard')"
             " ORDER BY 1"],
            stdout=subprocess.PIPE, check=True, text=True).stdout.split()
        if not names:
            failures.append("objects: the extension lists no members")
        text = "".join(open(p, encoding="utf-8").read() for p in pages)
        for name in names:
            if not re.search(r"\b" + re.escape(name) + r"\b", text):
                failures.append(f"objects: {name} is named on no page of docs/")


def check_guards_pgtap_as_owner(failures):
    """guards.md's pgTAP test, offered to copy, passes as it stands for an
    ordinary role that owns its tables, beside another role's tables (one
    with no guard, one with a disabled guard) that it does not see, and
    which fail both checks for a superuser."""
    page = os.path.join(ROOT, "docs", "guards.md")
    tests = [e for e in paired_examples(open(page, encoding="utf-8").read()) if "SELECT plan(" in e[1]]
    if len(tests) != 1 or tests[0][2] is None:
        failures.append("docs/guards.md: not one pgTAP example with its output")
        return
    line, sql, expected = tests[0]
    where = f"docs/guards.md:{line}, as an ordinary role"
    roles = ("raceguard_docs_owner", "raceguard_docs_other")
    setup = f"""
        CREATE EXTENSION pgtap;
        CREATE ROLE {roles[0]};
        CREATE ROLE {roles[1]};
        CREATE TABLE orders (id integer PRIMARY KEY, lock_version integer);
        CREATE TRIGGER orders_lock_version BEFORE INSERT OR UPDATE ON orders
            FOR EACH ROW EXECUTE FUNCTION raceguard.lock_version();
        ALTER TABLE orders OWNER TO {roles[0]};
        CREATE TABLE invoices (id integer PRIMARY KEY, lock_version integer);
        ALTER TABLE invoices OWNER TO {roles[1]};
        CREATE TABLE payments (id integer PRIMARY KEY, lock_version integer);
        CREATE TRIGGER payments_lock_version BEFORE INSERT OR UPDATE ON payments
            FOR EACH ROW EXECUTE FUNCTION raceguard.lock_version();
        ALTER TABLE payments DISABLE TRIGGER payments_lock_version;
        ALTER TABLE payments OWNER TO {roles[1]};
    """
    try:
        with database_with_extension("raceguard_docs_pgtap_as_owner") as database:
            code, out = psql(database, "\\set ON_ERROR_STOP 1\n" + setup)
            if code != 0:
                failures.append(f"{where}: the setup failed:\n{out}")
                return
            code, out = psql(database, f"SET ROLE {roles[0]};\n" + sql)
            # pgTAP is there already (an ordinary role cannot create it).
            out = out.replace('NOTICE:  extension "pgtap" already exists, skipping\n', "", 1)
            if normalized(out) != normalized(expected):
                failures.append(f"{where}: psql printed\n{out}\n--- the page shows\n{expected}")
            code, out = psql(database, sql)
            if "not ok 1 -" not in out or "not ok 2 -" not in out:
                failures.append(f"{where}: as a superuser, who sees the other role's tables, both checks should fail:\n{out}")
    finally:
        for role in roles:
            subprocess.run(["psql", "-X", "-q", "-d", "postgres", "-c", f"DROP ROLE IF EXISTS {role}"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


SHOW = "--show" in sys.argv  # print what psql prints for each example (for writing a page)


def main():
    readme = os.path.join(ROOT, "README.md")
    docs = os.path.join(ROOT, "docs")
    pages = sorted(os.path.join(docs, f) for f in os.listdir(docs) if f.endswith(".md")) if os.path.isdir(docs) else []
    failures = []
    count = 0
    lines = open(readme, encoding="utf-8").read().count("\n")
    if lines > README_MAX_LINES:
        failures.append(f"README.md: {lines} lines, more than the landing page's {README_MAX_LINES}")
    only = [os.path.abspath(a) for a in sys.argv[1:] if not a.startswith("--")]
    for path in [readme] + pages:
        if only and os.path.abspath(path) not in only:
            continue
        check_links(path, failures)
        count += run_page(path, failures)
    if not pages:
        failures.append("docs/: no pages")
    else:
        check_objects_named(pages, failures)
        if not only or os.path.join(docs, "guards.md") in only:
            check_guards_pgtap_as_owner(failures)
    for failure in failures:
        print("FAIL " + failure)
        print()
    print(f"docs: {count} SQL examples on {1 + len(pages)} pages, {len(failures)} failures")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
