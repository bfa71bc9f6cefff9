"""The README's guarantees name tests that exist."""
import re

from tests.conftest import PROJECT_DIR


def test_every_test_the_guarantees_name_exists():
    readme = (PROJECT_DIR / "README.md").read_text()
    guarantees = readme.split("## Guarantees", 1)[1].split("\n## ", 1)[0]
    named = re.findall(r"`(\w+\.py)(?:::(\w+))?`", guarantees)
    assert len(named) >= 20
    for module, test in named:
        source = (PROJECT_DIR / "tests" / module).read_text()
        if test:
            assert re.search(rf"def {test}\(", source), f"{module}::{test} is named in the README but absent"
