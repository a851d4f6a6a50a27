export const dynamicModule = "loaded through import() with attributes";
