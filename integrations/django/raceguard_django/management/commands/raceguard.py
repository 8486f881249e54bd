"""manage.py raceguard check: runs raceguard.check_guards() and fails when
it reports a problem."""
from django.core.management.base import BaseCommand, CommandError
from django.db import DEFAULT_DB_ALIAS, connections


class Command(BaseCommand):
    help = "raceguard's checks: `check` runs raceguard.check_guards() and exits non-zero on any problem"

    def add_arguments(self, parser):
        parser.add_argument("action", choices=["check"])
        parser.add_argument("--database", default=DEFAULT_DB_ALIAS, help="the database alias (default: %(default)s)")

    def handle(self, *args, **options):
        with connections[options["database"]].cursor() as cursor:
            cursor.execute(
                "SELECT table_name::text, trigger_name, problem FROM raceguard.check_guards() ORDER BY 1, 2, 3"
            )
            problems = cursor.fetchall()
        for table, trigger, problem in problems:
            self.stdout.write("%s: trigger %s: %s" % (table, trigger, problem))
        if problems:
            raise CommandError("raceguard: %d problem(s) in the guards" % len(problems))
        self.stdout.write("raceguard: all guards are fine")
