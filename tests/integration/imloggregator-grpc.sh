#!/usr/bin/env bash
# placeholder, being written
exit 0
