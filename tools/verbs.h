/* SPDX-License-Identifier: MIT */
#ifndef LMN_TOOLS_VERBS_H
#define LMN_TOOLS_VERBS_H

#include <stdint.h>

int lmn_tool_demo(int argc, char **argv);
int lmn_tool_create(int argc, char **argv);
int lmn_tool_rm(int argc, char **argv);

/* Parse an unsigned number in base (0: auto) no greater than max; -1 on
 * anything else. */
int lmn_tool_parse_u32(const char *s, int base, uint32_t max, uint32_t *ret);

#endif
