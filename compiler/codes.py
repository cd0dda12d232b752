"""The catalogue of every problem the compiler reports: one stable code per kind.

Codes are part of the interface: CI configurations, editor integrations and
our golden tests refer to them, so a code is never renamed or reused.  Each
entry has the default severity, the message template (``str.format`` fields
filled by the reporter) and a one-line explanation shown by ``dagu explain``.
"""

from __future__ import annotations



from dagu.spec.records import dataclass

@dataclass(frozen=True)
class Code:
    name: str
    severity: str  # "error" | "warning"; "note" for a rule `dagu explain` describes, never reported
    template: str
    explanation: str


def _catalogue(*codes: Code) -> dict[str, Code]:
    return {c.name: c for c in codes}


CODES: dict[str, Code] = _catalogue(
    # --- reading the file -------------------------------------------------
    Code("unreadable-file", "error", "cannot read workflow file: {reason}",
         "The file could not be opened or is not UTF-8 text."),
    Code("yaml-syntax", "error", "YAML syntax error: {reason}",
         "The file is not valid YAML; the position is where the parser gave up."),
    Code("yaml-too-large", "error", "the YAML document is too large to read: {reason}",
         "Aliases (*name) can make a few lines stand for billions of values; dagu refuses a document "
         "that expands past 2,000,000 values or nests past 200 levels, at the node where it gave up."),
    Code("nul-byte", "error", "a NUL byte is in this value: {value}",
         "No process can receive a NUL byte in its command line or environment; remove the \\0 escape."),
    Code("duplicate-key", "error", "key '{key}' is given twice in the same mapping{where}",
         "YAML would silently keep only the last value; say it once."),
    Code("empty-file", "error", "the file defines no workflow",
         "A workflow file needs at least one YAML document with steps."),
    Code("not-a-mapping", "error", "a workflow document must be a mapping of keys, got {actual}",
         "Each YAML document of a workflow file is a mapping such as `steps: [...]`."),
    # --- base config (base.yaml) ------------------------------------------
    Code("base-config-shape", "error", "a base config is one mapping of DAG keys, {actual}",
         "base.yaml (or the file DAGU_BASE_CONFIG names) holds defaults merged under every DAG of its "
         "directory: one YAML document, a mapping such as `env: [...]`."),
    Code("base-config-key", "error", "'{key}' cannot be set in a base config: {reason}",
         "A base config holds defaults shared by every DAG; each DAG's own steps and name stay in its file."),
    Code("base-config-missing", "error", "DAGU_BASE_CONFIG names {value}, which {reason}",
         "DAGU_BASE_CONFIG=PATH uses that file as every DAG's base config; empty means none; unset means "
         "base.yaml (or base.yml) beside each DAG file."),
    Code("base-config-not-a-dag", "error", "{value} is the base config of its directory, not a workflow",
         "base.yaml is merged under every DAG of its directory and is not compiled on its own."),
    Code("duplicate-step-type", "error", "step type '{name}' is also defined in the base config {where}",
         "A DAG may not redefine a custom step type of its base config (as upstream Dagu refuses it); "
         "rename one of them."),
    # --- shape (schema) ---------------------------------------------------
    Code("unknown-key", "error", "unknown key '{key}' in {where}",
         "The key is not part of the Dagu v2 format at this place."),
    Code("camel-case-key", "error", "'{key}' is the Dagu 1.x spelling of '{new}': v2 spells keys in snake_case",
         "Dagu 1.x used camelCase keys; v2 uses snake_case (`dagu migrate` rewrites them)."),
    Code("legacy-key", "error", "'{key}' is the Dagu 1.x spelling of '{new}'",
         "A key Dagu 1.x spelled differently (`dir`, `precondition`, capitalised names); `dagu migrate` rewrites it."),
    Code("legacy-executor", "error", "'executor' is the Dagu 1.x spelling of the step type: v2 writes {fix}",
         "Dagu 1.x named a step's type under `executor:`; v2 writes `type:` and `config:` on the step itself."),
    Code("legacy-run-call", "error", "'run: {target}' is the Dagu 1.x spelling of a sub-DAG call; in v2, `run:` is a shell command",
         "In Dagu 1.x `run: NAME` called another DAG; v2 writes `call: NAME` (`run:` runs a command). "
         "`run:` counts as a 1.x call when its value is one word that names a DAG of the same file "
         "or a NAME.yaml/NAME.yml beside it, ends in .yaml/.yml, or the step also has `params:`."),
    Code("wrong-type", "error", "{where} must be {expected}, got {actual}",
         "The value has the wrong YAML type for this key."),
    Code("invalid-value", "error", "{where} must be one of {allowed}, got {value}",
         "The key accepts only a fixed set of values."),
    Code("out-of-range", "error", "{where} must be {bound}, got {value}",
         "The number is outside the range this key accepts."),
    Code("missing-key", "error", "{where} needs '{key}'",
         "A required key is absent."),
    Code("invalid-format", "error", "{where}: {detail}",
         "The value does not have the form this key expects."),
    Code("literal-secret", "error", "{where} is a secret written into the workflow file",
         "Passwords, tokens and keys must not be written into a workflow file: the compiled plan, "
         "and every copy of it, would hold them.  Declare the value under `secrets:` (from an "
         "environment variable or a file) and write `${NAME}` here; it is masked in every log, "
         "status and output of the run."),
    # --- values -----------------------------------------------------------
    Code("invalid-cron", "error", "invalid cron expression {value}: {reason}",
         "Schedules use five-field cron (minute hour day-of-month month day-of-week) or @hourly/@daily/..."),
    Code("invalid-timezone", "error", "unknown time zone {value}",
         "Time zones are IANA names such as Europe/Berlin or UTC."),
    Code("invalid-duration", "error", "invalid duration {value}",
         "Durations are integers of seconds or strings such as 90s, 15m, 6h, 1h30m, 2d."),
    Code("invalid-regex", "error", "invalid regular expression {value}: {reason}",
         "Values prefixed with `re:` are regular expressions (Python `re` syntax, searched anywhere)."),
    Code("invalid-numeric-comparison", "error", "numeric comparison is invalid: {value}",
         "`num:` is followed by one of >=, <=, >, <, ==, != and a finite number or one whole "
         "reference such as ${THRESHOLD}, e.g. num:>=0.9."),
    Code("duplicate-route-target", "error", "step '{target}' is targeted by multiple routes of router '{step}'",
         "Each step may be the target of one route; every matching route's targets run, so list a "
         "step under the one pattern that should choose it."),
    Code("empty-route-pattern", "error", "route pattern cannot be empty (router '{step}')",
         "A pattern is an exact value, re: plus a regular expression, or num: plus a comparison."),
    Code("invalid-signal", "error", "unknown signal {value}",
         "signal_on_stop takes a signal name such as SIGTERM, SIGINT or SIGKILL."),
    Code("invalid-dag-name", "error", "invalid DAG name {value}: {reason}",
         "DAG names are at most 40 characters of letters, digits, '_', '.' and '-', not starting with '.' "
         "and without '..' (a DAG name is a folder of the data dir)."),
    Code("invalid-queue-name", "error", "invalid queue name {value}: {reason}",
         "Queue names follow the DAG name rule: at most 40 characters of letters, digits, '_', '.' and '-', "
         "not starting with '.' and without '..' (a queue is a folder of the data dir)."),
    Code("invalid-step-id", "error", "invalid step id {value}: {reason}",
         "A step's `id:` starts with a letter and holds letters, digits and '_', at most 40 bytes (ids are "
         "used as ${id.output}); a key of the map form of steps: may also hold '-'. A `name:` may be any text."),
    Code("reserved-step-id", "error", "step id {value} is reserved",
         "env, params, args, stdout, stderr, output and outputs (in any case) name parts of a run in "
         "references, so no step may use them as its id; rename the step's id."),
    Code("step-name-too-long", "error", "step name is {size} bytes long, the limit is {limit}",
         "A step's name is at most 255 bytes of UTF-8 (after trimming); put longer text in description:."),
    Code("duplicate-step-name", "error", "step name '{name}' is used twice (first at line {first_line})",
         "Each step name must be unique within its DAG (after trimming), since depends may name a step by it."),
    Code("step-id-is-a-name", "error", "'{value}' is the id of one step and the name of another (line {first_line})",
         "depends may name a step by its id or its name, so one step's id must not be another step's name. "
         "One step may use the same text for both."),
    Code("no-steps", "error", "the DAG has no steps",
         "Every DAG (the main one and each sub-DAG after ---) needs at least one step under steps:."),
    Code("invalid-param", "error", "invalid parameter {value}: {reason}",
         "Parameters are NAME=value pairs, positional values, or declared entries."),
    Code("empty-condition", "error", "the {what} is empty",
         "A precondition (or a repeat_policy condition) needs text: an empty command, expected value or "
         "re: pattern would hold or fail by accident (upstream spec 023)."),
    Code("repeat-without-condition", "error", "repeat: {mode} needs a condition or an exit_code",
         "repeat_policy with repeat: while or until repeats while/until a condition (or an exit code) "
         "matches; without one there is nothing to check. repeat: true repeats until limit."),
    Code("invalid-parallel-item", "error", "a parallel item holds {what}",
         "A static parallel item is a string, a number, or a flat mapping whose values are strings, numbers "
         "or booleans (upstream spec 018): the child DAG receives it as $1 or as named params."),
    Code("chain-router", "error", "router step '{step}' is in a chain",
         "A router chooses which steps run; in a chain every step runs after the one before it, so routes "
         "cannot apply. Write type: graph (a DAG without type: and without depends is a chain)."),
    Code("empty-step", "error", "step '{step}' has nothing to run",
         "A step needs a command, a script, a call, or a type with its input."),
    Code("custom-type-input", "error", "input of step type '{type}': {reason}",
         "A step of a custom type (step_types:) gives a with: input its input_schema refuses."),
    Code("custom-type-template", "error", "template of step type '{type}': {reason}",
         "A custom step type's template uses an expression this dagu cannot expand."),
    Code("unknown-step-type", "error", "unknown step type {value}",
         "The step type is neither built in nor declared under step_types."),
    Code("unsupported-step-type", "error", "{what} is not supported by this build",
         "The step type is part of the Dagu v2 format, but this build has no executor for it, so the run "
         "would fail at that step after the steps before it had run. The note lists the types this build "
         "runs; the type becomes valid the day its executor lands in the step-type catalogue "
         "(dagu.executors.catalog). A step_types: entry built on such a type is refused at its definition."),
    Code("ignored-step-key", "error", "step '{step}' sets '{key}', which a {type} step does not read",
         "Keys such as command, script, shell, call, params, parallel, routes and value are read only by "
         "some step types; on a step of another type the run would silently ignore them (a noop with a "
         "command reports success without running it)."),
    Code("conflicting-keys", "error", "{where} sets both '{first}' and '{second}'",
         "Two keys that mean different things for a step cannot be combined."),
    Code("unknown-action", "error", "unknown action {value}",
         "`action:` names a built-in action (http.request, ssh.run, dag.run, ...), a step type, or a "
         "name declared under step_types; `dagu schema dag` lists the built-in actions."),
    Code("unknown-const", "error", "'{name}' is not declared under consts",
         "${consts.NAME} is replaced by the value of NAME from the DAG's `consts:` list when the file is compiled."),
    # --- expressions --------------------------------------------------------
    Code("unterminated-reference", "warning", "{message}",
         "A `${` without a closing `}` is passed through literally; it is almost always a typo."),
    Code("undefined-variable", "warning", "'{name}' is not defined by env, params, dotenv, an output or a DAG_* variable",
         "The variable may come from the host environment at run time; if not, it expands to an empty string."),
    Code("not-an-ancestor", "error", "step '{step}' reads {ref}, but '{target}' does not run before it",
         "A step can read the output of a step only when that step is among its (transitive) dependencies."),
    Code("unknown-step-ref", "error", "{ref} refers to step '{target}', which does not exist",
         "Step references are ${step_id.output}, ${step_id.exit_code}, ${step_id.stdout} or ${step_id.stderr}."),
    # --- graph ------------------------------------------------------------
    Code("duplicate-step-id", "error", "step id '{step}' is used twice (first at line {first_line})",
         "Each step id must be unique within its DAG."),
    Code("unknown-depends", "error", "step '{step}' depends on unknown step '{target}'",
         "Every entry of depends must be the id or the name of another step of the same DAG, written "
         "exactly (case-sensitive, not trimmed); a number is read as its text."),
    Code("chain-depends", "error", "step '{step}' sets depends, but the DAG is type: chain",
         "In a chain each step depends on the one before it; use type: graph for explicit depends. "
         "depends: [] counts too. See `dagu explain default-type` for the type of a DAG without type:."),
    Code("dependency-cycle", "error", "dependency cycle: {cycle}",
         "Steps that depend on each other in a loop can never start."),
    Code("unknown-route-target", "error", "router step '{step}' routes to unknown step '{target}'",
         "Router targets must be ids of steps in the same DAG."),
    Code("bad-rewind-target", "error", "approval of step '{step}' rewinds to '{target}', {why}",
         "approval.rewind_to names the step a push-back runs again from: the approval step itself or a "
         "step it depends on (directly or through others), by id or name."),
    Code("undeclared-call-param", "error", "step '{step}' passes param '{param}', which DAG '{target}' does not declare",
         "A called DAG refuses named params it does not declare; declare it under the called DAG's params: "
         "or fix the name."),
    Code("unknown-call-target", "error", "step '{step}' calls unknown DAG '{target}'",
         "call names a DAG defined in the same file (after ---) or a file NAME.yaml beside it."),
    Code("call-recursion", "error", "sub-DAG calls form a loop: {cycle}",
         "A DAG that (indirectly) calls itself would never finish."),
    Code("duplicate-dag-name", "error", "DAG name '{name}' is used twice in this file (first at line {first_line})",
         "Each document of a multi-document file needs its own name."),
    Code("unnamed-sub-dag", "error", "document {index} of this file has no name",
         "Sub-DAGs defined after --- are called by name, so they need `name:`."),
    # --- rules, not diagnostics: never reported, shown by `dagu explain` ---------
    Code("default-type", "note", "",
         "The type of a DAG: an explicit `type:` wins. Without one, a DAG in which any step declares "
         "`depends` (even `depends: []`; `depends: null` is no depends) is a graph; a DAG without any "
         "`depends` runs its steps in file order (a chain). `depends` under an explicit `type: chain` is "
         "an error (chain-depends). A file that spells keys the Dagu 1.x way is read as 1.x meant it: "
         "without `type:` a chain, so its depends are refused with a pointer to `dagu migrate`, which "
         "writes the chain's order out as `type: graph`."),
    # --- the tool itself ----------------------------------------------------
    Code("internal-error", "error", "internal error: {reason}",
         "A bug in dagu; please report it with the file that triggered it."),
)
