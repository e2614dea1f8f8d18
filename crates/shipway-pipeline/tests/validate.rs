//! Validation: every problem of a workflow, gathered, each at its `line:col`.

use shipway_pipeline::parse::parse_workflow;

/// Parses `yaml` and compares all problems, one per line, with `want`.
fn check(yaml: &str, want: &str) {
    let (_, problems) = parse_workflow("w.yml", yaml);
    let got: Vec<String> = problems.iter().map(ToString::to_string).collect();
    let want: Vec<&str> = want
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    assert_eq!(got, want, "\n--- got:\n{}\n", got.join("\n"));
}

#[test]
fn a_valid_workflow_has_no_problems() {
    check(
        r#"
name: CI
on:
  push:
    branches: [main, 'release/**']
    paths-ignore: ['docs/**']
  pull_request:
    types: [opened]
  workflow_dispatch:
    inputs:
      level:
        type: choice
        options: [a, b]
        default: a
env:
  A: 1
jobs:
  build:
    runs-on: ubuntu-latest
    strategy:
      matrix:
        os: [x, y]
        include:
          - os: z
    outputs:
      v: ${{ steps.s.outputs.v }}
    steps:
      - uses: actions/checkout@v4
      - id: s
        run: echo "v=${{ matrix.os }}" >> "$GITHUB_OUTPUT"
        if: github.event_name == 'push' && always()
  test:
    needs: build
    if: ${{ needs.build.outputs.v != '' }}
    runs-on: ubuntu-latest
    steps:
      - run: echo ${{ hashFiles('**/Cargo.lock') }}
"#,
        "",
    );
}

#[test]
fn schema_problems_are_all_reported_at_their_keys() {
    check(
        r#"
on: pushh
jobs:
  build:
    runs-on: ubuntu-latest
    timeout-minutes: soon
    step:
      - run: x
  "bad id":
    runs-on: x
    steps:
      - run: a
        uses: actions/checkout@v4
      - name: nothing
      - run: b
        with: {a: 1}
"#,
        r#"
w.yml:2:5: on: unknown event 'pushh'
w.yml:4:3: jobs.build: a job needs `steps` (or `uses` to call a reusable workflow)
w.yml:6:22: jobs.build.timeout-minutes: expected a number of minutes, found a string
w.yml:7:5: jobs.build.step: unknown key 'step' in a job; expected one of: name, needs, runs-on, permissions, environment, concurrency, outputs, env, defaults, if, steps, timeout-minutes, strategy, continue-on-error, container, services, snapshot
w.yml:9:3: jobs["bad id"]: job id 'bad id' must start with a letter or '_' and contain only letters, digits, '-' and '_'
w.yml:12:9: jobs["bad id"].steps[0]: a step has either `run` or `uses`, not both
w.yml:14:9: jobs["bad id"].steps[1]: a step needs `run` or `uses`
w.yml:16:9: jobs["bad id"].steps[2].with: unknown key 'with' in a `run` step; expected one of: id, if, name, run, working-directory, shell, env, continue-on-error, timeout-minutes
"#,
    );
}

#[test]
fn expression_errors_point_at_the_exact_column() {
    check(
        r#"
on: push
jobs:
  a:
    runs-on: ubuntu-latest
    if: matrix.os == 'x'
    steps:
      - run: echo ${{ github.sha }} ${{ github.ref = 'x' }}
      - run: "echo ${{ nope.x }}"
      - run: |
          echo one
            echo ${{ toJSON(1, 2) }}
      - if: secrets.TOKEN != ''
        run: echo
      - run: echo ${{ always() }}
"#,
        r#"
w.yml:6:9: jobs.a.if: Unrecognized named-value: 'matrix'
w.yml:8:52: jobs.a.steps[0].run: Unexpected symbol: '='
w.yml:9:24: jobs.a.steps[1].run: Unrecognized named-value: 'nope'
w.yml:12:22: jobs.a.steps[2].run: Too many parameters supplied: 'toJSON'
w.yml:13:13: jobs.a.steps[3].if: Unrecognized named-value: 'secrets'
w.yml:15:23: jobs.a.steps[4].run: Function 'always' is only available in 'if' conditions
"#,
    );
}

#[test]
fn needs_unknown_and_cycles() {
    check(
        r#"
on: push
jobs:
  a:
    needs: [c, nope]
    runs-on: x
    steps: [{run: a}]
  b:
    needs: a
    runs-on: x
    steps: [{run: b}]
  c:
    needs: b
    runs-on: x
    steps: [{run: c}]
"#,
        r#"
w.yml:4:3: jobs.a.needs: the jobs' needs form a cycle: a -> c -> b -> a
w.yml:5:16: jobs.a.needs: job 'nope' does not exist; jobs are: a, b, c
"#,
    );
}

#[test]
fn matrix_and_filter_problems() {
    check(
        r#"
on:
  push:
    branches: [main]
    branches-ignore: [dev]
jobs:
  a:
    runs-on: x
    strategy:
      matrix:
        os: [a, b]
        exclude:
          - arch: x
    steps: [{run: a}]
  b:
    runs-on: x
    strategy:
      matrix:
        os: linux
    steps: [{run: a}]
"#,
        r#"
w.yml:5:5: on.push.branches-ignore: `branches` and `branches-ignore` cannot both be used for one event; use `branches` with `!` patterns
w.yml:12:9: jobs.a.strategy.matrix: matrix exclude key 'arch' does not match any key within the matrix
w.yml:19:13: jobs.b.strategy.matrix.os: expected a sequence of values for matrix axis 'os', found a string
"#,
    );
}

#[test]
fn unsupported_features_are_named() {
    check(
        r#"
on: push
jobs:
  a:
    runs-on: ubuntu-latest
    container: node:20
    services:
      db: {image: postgres}
    steps:
      - uses: someone/action@v1
      - uses: docker://alpine:3
      - uses: actions/cache/restore@v4
  b:
    uses: octo/repo/.github/workflows/x.yml@main
  c:
    uses: $/.github/workflows/x.yml
"#,
        r#"
w.yml:6:5: unsupported: jobs.a.container: `container:` needs a container engine, which Shipway's local runner does not use
w.yml:7:5: unsupported: jobs.a.services: `services:` needs a container engine, which Shipway's local runner does not use
w.yml:10:15: unsupported: jobs.a.steps[0].uses: 'someone/action@v1': action 'someone/action' is not built in; Shipway runs actions/checkout, actions/cache, actions/upload-artifact, actions/download-artifact, shipway/image, shipway/promote and local actions (--allow-unsupported-actions skips it with a warning)
w.yml:11:15: unsupported: jobs.a.steps[1].uses: 'docker://alpine:3': Docker container actions need a container engine, which Shipway's local runner does not use
w.yml:14:11: unsupported: jobs.b.uses: 'octo/repo/.github/workflows/x.yml@main': reusable workflows from other repositories are not supported; only ./.github/workflows/NAME.yml
w.yml:16:11: unsupported: jobs.c.uses: '$/.github/workflows/x.yml': self-repository reusable workflow syntax ('$/') is not supported
"#,
    );
}

#[test]
fn yaml_errors_and_non_workflows_do_not_panic() {
    for text in [
        "",
        "---\n",
        "[1, 2]",
        "on: [",
        "a: b\n---\nc: d\n",
        "\t",
        "jobs: 5",
        "on: {push: {branches: {a: 1}}}\njobs: {}",
    ] {
        let (_, problems) = parse_workflow("w.yml", text);
        assert!(!problems.is_empty(), "{text:?} should have problems");
    }
}

#[test]
fn references_to_jobs_not_needed_and_unknown_steps_are_warned() {
    check(
        r#"
on: push
jobs:
  a:
    runs-on: x
    outputs:
      o: ${{ steps.later.outputs.x }}
    steps:
      - run: echo ${{ steps.later.outputs.x }}
      - id: later
        run: echo ${{ needs.b.outputs.y }}
  b:
    needs: a
    if: needs.a.result == 'success' && needs.c.result
    runs-on: x
    steps: [{run: 'echo ${{ needs.A.outputs.o }}'}]
  c:
    runs-on: x
    steps: [{run: x}]
"#,
        r#"
w.yml:9:23: warning: jobs.a.steps[0].run: steps.later does not name an earlier step of this job; it is always null here
w.yml:11:23: warning: jobs.a.steps[1].run: needs.b is not a job this job needs (needs: none); it is always null here
w.yml:14:40: warning: jobs.b.if: needs.c is not a job this job needs (needs: a); it is always null here
"#,
    );
}

/// Each key allows GitHub's own set of contexts (checked against GitHub's parser for every
/// context in 25 keys); a few rows that differ between keys.
#[test]
fn contexts_are_allowed_per_key_as_github_allows_them() {
    check(
        r#"
on: push
defaults:
  run:
    shell: ${{ github.x }}
env:
  A: ${{ secrets.S }}
  B: ${{ matrix.m }}
jobs:
  a:
    runs-on: ${{ matrix.os }}
    timeout-minutes: ${{ steps.x }}
    strategy:
      matrix:
        os: ${{ fromJSON(needs.n.outputs.o) }}
        v: ${{ matrix.v }}
    steps:
      - run: echo ${{ runner.os }} ${{ job.status }} ${{ strategy.job-index }}
"#,
        r#"
w.yml:5:16: defaults.run.shell: Unrecognized named-value: 'github'
w.yml:8:10: env.B: Unrecognized named-value: 'matrix'
w.yml:12:26: jobs.a.timeout-minutes: Unrecognized named-value: 'steps'
w.yml:15:26: warning: jobs.a.strategy.matrix.os: needs.n is not a job this job needs (needs: none); it is always null here
w.yml:16:16: jobs.a.strategy.matrix.v: Unrecognized named-value: 'matrix'

"#,
    );
}

#[test]
fn schedules_are_checked_field_by_field_and_only_utc_is_fired() {
    check(
        r#"
on:
  schedule:
    - cron: '*/15 * * * MON-FRI'
    - cron: '61 * * * *'
    - cron: '0 9 * *'
    - cron: '0 9 * * *'
      timezone: Europe/Paris
    - cron: '0 9 * * *'
      timezone: UTC
jobs:
  j:
    runs-on: ubuntu-latest
    steps:
      - run: echo
"#,
        "
        w.yml:5:13: on.schedule[1].cron: cron '61 * * * *': minute 61 is out of range: 0 to 59
        w.yml:6:13: on.schedule[2].cron: cron '0 9 * *' must have five fields (minute hour day-of-month month day-of-week), found 4
        w.yml:8:17: unsupported: on.schedule[3].timezone: time zone 'Europe/Paris': Shipway fires cron lines in UTC; write the line in UTC and leave timezone out
        ",
    );
}
