file(READ ${IN} SCHEMA)
file(WRITE ${OUT} "// Generated from format/atrous.fbs at build time.\nnamespace atrous { extern const char* const kSchemaText; const char* const kSchemaText = R\"ATROUS_FBS(${SCHEMA})ATROUS_FBS\"; }\n")
