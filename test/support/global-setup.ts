/** Starts the local origin once for the whole run and hands its ports to the tests. */
import type { TestProject } from "vitest/node";
import { startOrigin } from "./origin";
import { TEST_FORWARD_SECRET } from "./settings";
import "./provided-context";

export default async function setup(project: TestProject) {
  const origin = await startOrigin(TEST_FORWARD_SECRET);
  project.provide("originPort", origin.originPort);
  project.provide("controlPort", origin.controlPort);
  return () => origin.close();
}
