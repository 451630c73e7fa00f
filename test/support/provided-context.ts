/** What global-setup.ts hands the tests (see vitest's `provide` and `inject`). */
declare module "vitest" {
  export interface ProvidedContext {
    originPort: number;
    controlPort: number;
  }
}

export {};
