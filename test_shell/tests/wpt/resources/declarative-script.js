globalThis.declarativeScriptRuns = (globalThis.declarativeScriptRuns || 0) + 1;
