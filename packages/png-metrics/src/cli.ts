#!/usr/bin/env node
import { main } from './command_line';

process.exitCode = main(process.argv.slice(2));
