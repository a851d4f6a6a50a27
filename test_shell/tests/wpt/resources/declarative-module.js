export const declarativeModule = "loaded through an import attribute";
