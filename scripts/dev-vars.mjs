// Reads .dev.vars (KEY=value lines), creating it from .dev.vars.example on first use.
import { copyFileSync, existsSync, readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";

export const root = fileURLToPath(new URL("..", import.meta.url));

/** @returns {Record<string, string>} */
export function loadDevVars() {
  const path = `${root}.dev.vars`;
  if (!existsSync(path)) {
    copyFileSync(`${root}.dev.vars.example`, path);
    console.log("created .dev.vars from .dev.vars.example (demo settings)");
  }
  /** @type {Record<string, string>} */
  const vars = {};
  for (const line of readFileSync(path, "utf8").split(/\r?\n/)) {
    const match = /^\s*([A-Z0-9_]+)\s*=\s*(.*?)\s*$/.exec(line);
    if (match && match[1] && match[2] !== undefined) vars[match[1]] = match[2].replace(/^"(.*)"$/, "$1");
  }
  return vars;
}
