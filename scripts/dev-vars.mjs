// @ts-check
// Reads .dev.vars (KEY=value lines), creating it from .dev.vars.example on first use.
import { copyFileSync, existsSync, readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";

export const root = fileURLToPath(new URL("..", import.meta.url));

/**
 * Reads KEY=value lines (the .dev.vars format); undefined when the file does not exist.
 * @param {string} path
 * @returns {Record<string, string> | undefined}
 */
export function readVarsFile(path) {
  if (!existsSync(path)) return undefined;
  /** @type {Record<string, string>} */
  const vars = {};
  for (const line of readFileSync(path, "utf8").split(/\r?\n/)) {
    const match = /^\s*([A-Z0-9_]+)\s*=\s*(.*?)\s*$/.exec(line);
    if (match && match[1] && match[2] !== undefined) vars[match[1]] = match[2].replace(/^"(.*)"$/, "$1");
  }
  return vars;
}

/**
 * .dev.vars, created from .dev.vars.example the first time. A .dev.vars made before a provider
 * was added lacks its settings, and that provider stays disabled: said once, naming them.
 * @returns {Record<string, string>}
 */
export function loadDevVars() {
  const path = `${root}.dev.vars`;
  if (!existsSync(path)) {
    copyFileSync(`${root}.dev.vars.example`, path);
    console.log("created .dev.vars from .dev.vars.example (demo settings)");
  }
  const vars = readVarsFile(path) ?? {};
  const missing = Object.keys(readVarsFile(`${root}.dev.vars.example`) ?? {}).filter((name) => !(name in vars));
  if (missing.length > 0) {
    console.log(
      `.dev.vars lacks ${missing.join(", ")} (in .dev.vars.example): what they configure stays off; copy those lines, or delete .dev.vars to recreate it`,
    );
  }
  return vars;
}
