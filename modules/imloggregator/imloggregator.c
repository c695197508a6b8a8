/* placeholder */
int modInit(void);
int modInit(void) { return 0; }
