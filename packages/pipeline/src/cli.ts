#!/usr/bin/env node
import { fileURLToPath } from 'node:url';
import { main } from './command_line';

const embeddedModel = fileURLToPath(new URL('../models/png-tiny-sd', import.meta.url));
process.exitCode = await main(process.argv.slice(2), { stdout: process.stdout, stderr: process.stderr, embeddedModel });
