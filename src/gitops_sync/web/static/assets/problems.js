// The current problems (from /v1/status): what is wrong with which file, and where.

import { clip, count, fill, h } from "./dom.js";

const SHOWN = 200; // more than this is a list nobody reads in a browser; the count says how many

/** Fill `list` with `problems` ({file, line, severity, message}); errors first, then by file and line. */
export function renderProblems(section, list, counter, problems) {
  const ordered = [...problems].sort(
    (a, b) =>
      rank(a.severity) - rank(b.severity) ||
      String(a.file).localeCompare(String(b.file)) ||
      (a.line ?? 0) - (b.line ?? 0),
  );
  section.dataset.count = String(problems.length);
  section.classList.toggle("clean", problems.length === 0);
  const errors = problems.filter((problem) => problem.severity === "error").length;
  counter.textContent = problems.length === 0 ? "(none)" : `(${count(problems.length)}${errors ? `, ${count(errors)} error${errors === 1 ? "" : "s"}` : ""})`;
  if (problems.length === 0) {
    fill(list, h("li", { class: "problem none" }, "No problems: the last sync reported none."));
    return;
  }
  fill(
    list,
    ordered.slice(0, SHOWN).map((problem) =>
      h(
        "li",
        { class: `problem severity-${problem.severity === "error" ? "error" : "warning"}` },
        h("span", { class: "severity" }, String(problem.severity ?? "problem")),
        h("code", { class: "where" }, problem.line ? `${problem.file}:${problem.line}` : String(problem.file ?? "")),
        h("span", { class: "message" }, clip(problem.message ?? "", 1000)),
      ),
    ),
    problems.length > SHOWN ? h("li", { class: "problem more" }, `\u2026 and ${count(problems.length - SHOWN)} more`) : null,
  );
}

function rank(severity) {
  return severity === "error" ? 0 : 1;
}
